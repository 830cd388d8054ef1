// The page's CSP allows scripts and styles only from the console's files, plus
// <style> elements carrying the per-response nonce that warren serve writes into
// <meta name="csp-nonce"> (docs/CONSOLE.md). xterm.js creates <style> elements
// for its theme and cell sizes; they get the nonce here, so no 'unsafe-inline'.
const meta = document.querySelector('meta[name="csp-nonce"]');
const nonce = meta?.getAttribute('content') || '';
meta?.remove();
if (nonce && !nonce.startsWith('__')) {
  const create = Document.prototype.createElement;
  Document.prototype.createElement = function createElement(tag, options) {
    const el = create.call(this, tag, options);
    if (typeof tag === 'string' && tag.toLowerCase() === 'style') el.nonce = nonce;
    return el;
  };
}
