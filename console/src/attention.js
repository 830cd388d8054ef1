// Whether an idle session waits for a person (docs/CONSOLE.md, "Sessions"):
// the sessions list reads it from each idle session's newest events. No
// imports, so the conformance suite runs it in Node as is.

// The events attentionOf reads: the newest `session.status_idle`, the calls
// it may list, and their answers.
export const ATTENTION_TYPES = ['session.status_idle', 'agent.tool_use', 'agent.mcp_tool_use', 'agent.custom_tool_use',
  'user.tool_confirmation', 'user.tool_result', 'user.custom_tool_result'];

// What a person should read for an idle session, from its newest
// ATTENTION_TYPES events (newest first; docs/CONSOLE.md): 'requires_action'
// when its last idle was requires_action and a pending call waits for a
// person or a client (an always_ask call not confirmed yet, a custom tool, a
// call older than the page), 'working' when every pending call is an allowed
// built-in one that a worker runs (the session stays idle meanwhile), else
// null (plain idle). The CLI's `session list` applies the same rule.
export function attentionOf(newestFirst) {
  const idle = newestFirst.find((e) => e.type === 'session.status_idle');
  if (!idle || idle.stop_reason?.type !== 'requires_action') return null;
  const uses = new Map();
  const verdicts = new Map();
  const results = new Set();
  for (const e of newestFirst) {
    if (e.type === 'user.tool_confirmation') { if (!verdicts.has(e.tool_use_id)) verdicts.set(e.tool_use_id, e.result); }
    else if (e.type === 'user.tool_result') results.add(e.tool_use_id);
    else if (e.type === 'user.custom_tool_result') results.add(e.custom_tool_use_id);
    else if (e.type.startsWith('agent.')) uses.set(e.id, e);
  }
  let working = false;
  for (const id of idle.stop_reason.event_ids || []) {
    if (results.has(id) || verdicts.get(id) === 'deny') continue;
    const use = uses.get(id);
    if (!use || use.type === 'agent.custom_tool_use') return 'requires_action';
    if (verdicts.get(id) !== 'allow' && use.evaluated_permission === 'ask') return 'requires_action';
    working = true;
  }
  return working ? 'working' : null;
}
