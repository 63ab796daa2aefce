// An immutable map whose next version costs its changes, not its size: a large base shared by the
// versions and a small layer of the keys set or deleted since. The model's service entries and echo
// markers are kept in one, so a one-service reload at 30,000 services copies no 30,000-entry map;
// when the layer has grown to a sixteenth of the base, the next version folds it in (one copy per
// many changes). Reads look in the layer, then the base; iteration goes in the base's order, keys
// new since the base last.

/** In the layer: the key was deleted. */
const GONE: unique symbol = Symbol("gone");

export class LayeredMap<K, V> implements ReadonlyMap<K, V> {
  private constructor(
    private readonly base: ReadonlyMap<K, V>,
    private readonly layer: ReadonlyMap<K, V | typeof GONE>,
    readonly size: number,
  ) {}

  /** A version of `map`; a LayeredMap is itself. */
  static of<K, V>(map: ReadonlyMap<K, V>): LayeredMap<K, V> {
    return map instanceof LayeredMap ? (map as LayeredMap<K, V>) : new LayeredMap(map, new Map(), map.size);
  }

  get(key: K): V | undefined {
    const v = this.layer.get(key);
    if (v === GONE) return undefined;
    return v !== undefined || this.layer.has(key) ? v : this.base.get(key);
  }

  has(key: K): boolean {
    const v = this.layer.get(key);
    return v === GONE ? false : v !== undefined || this.layer.has(key) || this.base.has(key);
  }

  /** The next version: `set` written, `deleted` removed (a key in both ends up set). */
  with(set: Iterable<readonly [K, V]>, deleted: Iterable<K> = []): LayeredMap<K, V> {
    const layer = new Map(this.layer);
    let size = this.size;
    const present = (k: K) => (layer.has(k) ? layer.get(k) !== GONE : this.base.has(k));
    for (const k of deleted) {
      if (!present(k)) continue;
      size--;
      if (this.base.has(k)) layer.set(k, GONE); else layer.delete(k);
    }
    for (const [k, v] of set) {
      if (!present(k)) size++;
      layer.set(k, v);
    }
    if (layer.size > 64 && layer.size * 16 > this.base.size) {
      const next = new LayeredMap(this.base, layer, size);
      return new LayeredMap(new Map(next), new Map(), size);
    }
    return new LayeredMap(this.base, layer, size);
  }

  *entries(): MapIterator<[K, V]> {
    for (const [k, v] of this.base) {
      const now = this.layer.get(k);
      if (now === undefined && !this.layer.has(k)) yield [k, v];
      else if (now !== GONE) yield [k, now as V];
    }
    for (const [k, v] of this.layer) if (v !== GONE && !this.base.has(k)) yield [k, v];
  }

  *keys(): MapIterator<K> {
    for (const [k] of this.entries()) yield k;
  }

  *values(): MapIterator<V> {
    for (const [, v] of this.entries()) yield v;
  }

  [Symbol.iterator](): MapIterator<[K, V]> {
    return this.entries();
  }

  forEach(fn: (value: V, key: K, map: ReadonlyMap<K, V>) => void, thisArg?: unknown): void {
    for (const [k, v] of this.entries()) fn.call(thisArg, v, k, this);
  }
}
