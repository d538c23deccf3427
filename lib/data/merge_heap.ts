// The binary min-heap of candidate merges shared by the byte-level BPE of bpe.ts and the
// tokenizer.json BPE model of hf_bpe.ts: keys are rank * n + position, so the lowest rank
// comes first and, among equal ranks, the leftmost pair.

export class MergeHeap {
  private readonly keys: number[] = [];

  get size(): number { return this.keys.length; }

  /** The smallest key (undefined when empty). */
  peek(): number { return this.keys[0]; }

  push(k: number): void {
    const heap = this.keys;
    let i = heap.push(k) - 1;
    while (i > 0) { const p = (i - 1) >> 1; if (heap[p] <= k) break; heap[i] = heap[p]; i = p; }
    heap[i] = k;
  }

  /** Removes and returns the smallest key; the heap must not be empty. */
  pop(): number {
    const heap = this.keys;
    const top = heap[0], k = heap.pop()!;
    if (heap.length) {
      let i = 0;
      for (;;) {
        let c = 2 * i + 1;
        if (c >= heap.length) break;
        if (c + 1 < heap.length && heap[c + 1] < heap[c]) c++;
        if (heap[c] >= k) break;
        heap[i] = heap[c]; i = c;
      }
      heap[i] = k;
    }
    return top;
  }
}
