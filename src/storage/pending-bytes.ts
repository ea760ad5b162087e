/** Pending write sizes of a slot in commit order, with their running total (a growable ring). */
export class PendingBytes {
  private lsns = new Float64Array(1024);
  private sizes = new Float64Array(1024);
  private head = 0;
  private len = 0;
  bytes = 0;

  push(lsn: bigint, size: number): void {
    if (this.len === this.lsns.length) this.grow();
    const i = (this.head + this.len) % this.lsns.length;
    this.lsns[i] = Number(lsn);
    this.sizes[i] = size;
    this.len++;
    this.bytes += size;
  }

  dropUpTo(lsn: bigint): void {
    const limit = Number(lsn);
    while (this.len > 0 && this.lsns[this.head]! <= limit) {
      this.bytes -= this.sizes[this.head]!;
      this.head = (this.head + 1) % this.lsns.length;
      this.len--;
    }
  }

  private grow(): void {
    const n = this.lsns.length * 2;
    const lsns = new Float64Array(n);
    const sizes = new Float64Array(n);
    for (let k = 0; k < this.len; k++) {
      const i = (this.head + k) % this.lsns.length;
      lsns[k] = this.lsns[i]!;
      sizes[k] = this.sizes[i]!;
    }
    this.lsns = lsns;
    this.sizes = sizes;
    this.head = 0;
  }
}
