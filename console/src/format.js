// Pure formatting helpers: no DOM, no imports, so Node tests import them
// directly (tests/conformance/console_format.test.mjs).

// BetaMonetaryAmount: `amount` in cents as a string (spec 3.1 usage).
// Whole cents print with two decimals ($1.25). A non-zero amount under one
// cent keeps two significant digits ($0.0042, not $0.00), down to a
// millionth of a dollar (trailing zeros dropped); below that it prints as "<$0.000001".
export function cost(m) {
  if (!m || m.amount === undefined || m.amount === null || m.amount === '') return '—';
  const cents = Number(m.amount);
  if (!Number.isFinite(cents)) return '—';
  const unit = m.currency === 'USD' || !m.currency ? '$' : m.currency + ' ';
  const sign = cents < 0 ? '-' : '';
  const dollars = Math.abs(cents) / 100;
  if (dollars === 0 || dollars >= 0.01) return sign + unit + dollars.toFixed(2);
  if (dollars < 0.000001) return '<' + sign + unit + '0.000001';
  const decimals = Math.min(6, 1 - Math.floor(Math.log10(dollars)));
  return sign + unit + dollars.toFixed(decimals).replace(/0+$/, '');
}
