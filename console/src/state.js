// A tiny observable value with a Preact hook (no state library needed).
import { useEffect, useState } from 'preact/hooks';

export function signal(initial) {
  let value = initial;
  const subs = new Set();
  return {
    get: () => value,
    set(v) {
      value = v;
      subs.forEach((f) => f(v));
    },
    subscribe(f) {
      subs.add(f);
      return () => subs.delete(f);
    },
    use() {
      const [v, setV] = useState(value);
      useEffect(() => this.subscribe(setV), []);
      return v;
    },
  };
}
