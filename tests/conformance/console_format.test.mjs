// The console's pure formatting helpers (console/src/format.js).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { cost } from '../../console/src/format.js';

test('cost: whole cents keep two decimals; sub-cent amounts keep two significant digits', () => {
  assert.equal(cost({ amount: '125', currency: 'USD' }), '$1.25');
  assert.equal(cost({ amount: '0', currency: 'USD' }), '$0.00');
  assert.equal(cost({ amount: '1', currency: 'USD' }), '$0.01');
  assert.equal(cost({ amount: '0.42', currency: 'USD' }), '$0.0042');
  assert.equal(cost({ amount: '0.0731' }), '$0.00073');
  assert.equal(cost({ amount: '0.05', currency: 'EUR' }), 'EUR 0.0005');
  assert.equal(cost({ amount: '0.00001' }), '<$0.000001');
  assert.equal(cost({ amount: '-0.42' }), '-$0.0042');
  assert.equal(cost({ amount: '123456' }), '$1234.56');
});

test('cost: missing or malformed amounts print a dash', () => {
  assert.equal(cost(undefined), '—');
  assert.equal(cost({}), '—');
  assert.equal(cost({ amount: 'abc' }), '—');
  assert.equal(cost({ amount: '' }), '—');
});
