// An incremental SSE parser over fetch() + ReadableStream (EventSource cannot
// send the API key header). Calls onFrame({event, data, id}) per frame.
export async function readSse(res, onFrame, signal) {
  const reader = res.body.getReader();
  const dec = new TextDecoder();
  let buf = '';
  let ev = { event: 'message', data: [], id: null };
  const flushLine = (line) => {
    if (line === '') {
      if (ev.data.length) onFrame({ event: ev.event, data: ev.data.join('\n'), id: ev.id });
      ev = { event: 'message', data: [], id: null };
      return;
    }
    if (line.startsWith(':')) return;
    const i = line.indexOf(':');
    const field = i < 0 ? line : line.slice(0, i);
    let value = i < 0 ? '' : line.slice(i + 1);
    if (value.startsWith(' ')) value = value.slice(1);
    if (field === 'event') ev.event = value;
    else if (field === 'data') ev.data.push(value);
    else if (field === 'id') ev.id = value;
  };
  try {
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      buf += dec.decode(value, { stream: true });
      let nl;
      while ((nl = buf.search(/\r\n|\n|\r/)) >= 0) {
        // A CR at the end of what arrived may be the first half of a CRLF.
        if (buf[nl] === '\r' && nl === buf.length - 1) break;
        const line = buf.slice(0, nl);
        buf = buf.slice(nl + (buf[nl] === '\r' && buf[nl + 1] === '\n' ? 2 : 1));
        flushLine(line);
      }
      if (signal?.aborted) break;
    }
  } finally {
    reader.releaseLock?.();
  }
}
