// One multiplexed event stream per page (GET /v1/warren/stream, see
// docs/CONSOLE.md): the session page follows its session, the sessions list
// follows the org's session changes. Reconnects resume from the last event
// id of each session (`session=<id>@<event_id>`), and events are de-duplicated
// by id (the processed copy of a queued client event replaces it), so a
// reload or a dropped connection leaves no gap and no duplicate.
//
// Servers without the route (404) are followed the old way: the history is
// paged from GET /v1/sessions/{id}/events, then /events/stream with
// Last-Event-ID; the sessions list is polled.
import { headers, qs, request, errorFrom } from './api.js';
import { readSse } from './sse.js';

const sleep = (ms, signal) =>
  new Promise((r) => {
    const t = setTimeout(r, ms);
    signal?.addEventListener('abort', () => (clearTimeout(t), r()), { once: true });
  });

export class EventStream {
  // on: {event(sid, ev), preview(sid, frame), session(obj), error(envelope), state(s)}
  constructor({ sessions = [], sessionsList = false, previews = false, on = {} }) {
    this.cursors = new Map(sessions.map((s) => [s, null]));
    this.sessionsList = sessionsList;
    this.previews = previews;
    this.on = on;
    this.seen = new Map();
    this.ctl = new AbortController();
    this.mode = 'multiplexed';
  }

  start() {
    this.loop();
    return this;
  }

  stop() {
    this.ctl.abort();
  }

  setState(s) {
    this.on.state?.(s);
  }

  // Each event once, except the one repeat the API makes on purpose: a
  // client event seen live arrives queued (processed_at null) and again,
  // same id, once processed (docs/API.md). That second copy is passed on as
  // an update of the first (the page replaces it by id); any other repeat
  // (a reconnect's overlap) is dropped.
  emitEvent(sid, ev) {
    if (!ev || !ev.id) return;
    const queued = ev.processed_at === null;
    const before = this.seen.get(ev.id); // undefined | 'queued' | 'done'
    if (before === 'done' || (before === 'queued' && queued)) return;
    this.seen.set(ev.id, queued ? 'queued' : 'done');
    this.cursors.set(sid, ev.id);
    this.on.event?.(sid, ev);
  }

  async loop() {
    const signal = this.ctl.signal;
    let backoff = 500;
    while (!signal.aborted) {
      try {
        if (this.mode === 'multiplexed') {
          await this.runMultiplexed(signal);
          if (this.mode === 'fallback') continue; // the server has no multiplexed stream: switch at once
        } else await this.runFallback(signal);
        backoff = 500;
      } catch (e) {
        if (signal.aborted) return;
        if (e.status === 401 || e.status === 403) {
          this.on.error?.({ error: { type: e.type, message: e.message } });
          this.setState('failed');
          return;
        }
      }
      if (signal.aborted) return;
      this.setState('reconnecting');
      await sleep(backoff, signal);
      backoff = Math.min(backoff * 2, 5000);
    }
  }

  async runMultiplexed(signal) {
    const session = [...this.cursors].map(([sid, cur]) => (cur ? `${sid}@${cur}` : sid));
    const url = '/v1/warren/stream' + qs({ session, sessions_list: this.sessionsList ? 1 : '', previews: this.previews ? 1 : '' });
    const res = await fetch(url, { headers: headers({ accept: 'text/event-stream' }), signal });
    if (res.status === 404) {
      const err = await errorFrom(res);
      if (/no route/i.test(err.message)) {
        this.mode = 'fallback';
        return;
      }
      throw err;
    }
    if (!res.ok) throw await errorFrom(res);
    this.setState('live');
    await readSse(
      res,
      (f) => {
        let d;
        try {
          d = JSON.parse(f.data);
        } catch {
          return;
        }
        if (f.event === 'session_event') this.emitEvent(d.session_id, d.event);
        else if (f.event === 'preview') this.on.preview?.(d.session_id, d.frame);
        else if (f.event === 'session') this.on.session?.(d);
        else if (f.event === 'error') this.on.error?.(d);
      },
      signal,
    );
  }

  async runFallback(signal) {
    const tasks = [...this.cursors.keys()].map((sid) => this.followOne(sid, signal));
    if (this.sessionsList) tasks.push(this.pollSessions(signal));
    await Promise.all(tasks);
  }

  async followOne(sid, signal) {
    if (!this.cursors.get(sid)) {
      let page;
      do {
        const r = await request('GET', `/v1/sessions/${sid}/events` + qs({ limit: 1000, page }), undefined, { signal });
        for (const ev of r.data) this.emitEvent(sid, ev);
        page = r.next_page;
      } while (page && !signal.aborted);
    }
    const cur = this.cursors.get(sid);
    const q = this.previews ? qs({ 'event_deltas[]': ['agent.message', 'agent.thinking'] }) : '';
    const res = await fetch(`/v1/sessions/${sid}/events/stream${q}`, {
      headers: headers(cur ? { 'last-event-id': cur, accept: 'text/event-stream' } : { accept: 'text/event-stream' }),
      signal,
    });
    if (!res.ok) throw await errorFrom(res);
    this.setState('live');
    await readSse(
      res,
      (f) => {
        let d;
        try {
          d = JSON.parse(f.data);
        } catch {
          return;
        }
        if (d.type === 'event_start' || d.type === 'event_delta') this.on.preview?.(sid, d);
        else if (d.type !== 'ping' && d.id) this.emitEvent(sid, d);
      },
      signal,
    );
  }

  async pollSessions(signal) {
    const last = new Map();
    this.setState('live');
    while (!signal.aborted) {
      const r = await request('GET', '/v1/sessions' + qs({ limit: 100 }), undefined, { signal });
      if (!r.next_page) {
        // The whole list came back: a session no longer in it was deleted.
        const now = new Set(r.data.map((s) => s.id));
        for (const id of [...last.keys()])
          if (!now.has(id)) {
            last.delete(id);
            this.on.session?.({ id, type: 'session_deleted' });
          }
      }
      for (const s of r.data) {
        const k = JSON.stringify([s.status, s.title, s.usage, s.updated_at]);
        if (last.get(s.id) !== k) {
          last.set(s.id, k);
          this.on.session?.(s);
        }
      }
      await sleep(2000, signal);
    }
  }
}
