// Progress output: a one-line bar redrawn in place on a TTY, plain log lines otherwise.
export type ProgressMode = 'auto' | 'bar' | 'lines' | 'none';

export class Progress {
  private readonly mode: 'bar' | 'lines' | 'none';
  private lastLen = 0;
  constructor(mode: ProgressMode, private readonly total: number, private readonly out: NodeJS.WriteStream = process.stderr) {
    this.mode = mode === 'auto' ? (out.isTTY ? 'bar' : 'lines') : mode;
  }
  update(step: number, text: string, force = false): void {
    if (this.mode === 'none') return;
    if (this.mode === 'lines') {
      if (force) this.out.write(`step ${step}/${this.total} ${text}\n`);
      return;
    }
    const width = 24;
    const filled = Math.round((width * step) / Math.max(1, this.total));
    const line = `[${'#'.repeat(filled)}${'.'.repeat(width - filled)}] ${step}/${this.total} ${text}`;
    this.out.write(`\r${line}${' '.repeat(Math.max(0, this.lastLen - line.length))}`);
    this.lastLen = line.length;
  }
  message(text: string): void {
    if (this.mode === 'none') return;
    if (this.mode === 'bar' && this.lastLen) {
      this.out.write('\n');
      this.lastLen = 0;
    }
    this.out.write(`${text}\n`);
  }
  end(): void {
    if (this.mode === 'bar' && this.lastLen) this.out.write('\n');
    this.lastLen = 0;
  }
}
