/** Worker thread of `BlockCompression`: compresses block data files off the event loop. */
import { parentPort } from 'node:worker_threads';
import { writeCompressedBlock } from './compressed-block.js';

interface Job {
  id: number;
  src: string;
  dst: string;
  rawLength: number;
  sync: boolean;
}

parentPort!.on('message', (job: Job) => {
  writeCompressedBlock(job.src, job.dst, job.rawLength, job.sync).then(
    (r) => parentPort!.postMessage({ id: job.id, ...r }),
    (e: unknown) => parentPort!.postMessage({ id: job.id, error: (e as Error).message ?? String(e) }),
  );
});
