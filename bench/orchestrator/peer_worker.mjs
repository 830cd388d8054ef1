// The peer's per-item process for bench/orchestrator: the reference's way
// (`worker poll --on-work`), one fresh Node process per claimed work item
// running the official SDK's EnvironmentWorker.handleItem() for it. It reads
// the ANTHROPIC_* variables that command sets, serves the session's tool calls,
// force-stops the item after its idle window (argv[4] ms, default 300) and
// exits. The idle-footprint peer keeps it alive (a long window) to measure it.
import Anthropic from '../../tests/conformance/node_modules/@anthropic-ai/sdk/index.mjs';

const [baseURL, workdir, idle] = process.argv.slice(2);
const client = new Anthropic({ apiKey: 'unused', baseURL, maxRetries: 2 });
await client.beta.environments.work.worker({ workdir, maxIdleMs: Number(idle || 300) }).handleItem();
