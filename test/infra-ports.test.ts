/**
 * Ports for test servers (bench/lib/ports.ts): outside the kernel's ephemeral range, so that no
 * outgoing connection can take a crashed server's port before its restart, and claimed per process,
 * so that concurrent test processes never share one.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readFileSync, unlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { claimPort, ephemeralRange, freePort, RESERVED_RANGE } from '../bench/lib/ports.js';

const lockOf = (port: number): string => join(tmpdir(), 'ferry-test-ports', String(port));

/** A pid that no process has now. */
function deadPid(): number {
  for (let pid = 4_194_000; pid > 1_000_000; pid--) {
    try {
      process.kill(pid, 0);
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ESRCH') return pid;
    }
  }
  throw new Error('no free pid found');
}

test('free ports lie outside the ephemeral range and belong to this process', async () => {
  const eph = ephemeralRange();
  assert.ok(eph, 'the ephemeral range is readable (Linux)');
  const ports = new Set<number>();
  for (let i = 0; i < 20; i++) ports.add(await freePort());
  assert.equal(ports.size, 20, 'never the same port twice');
  for (const port of ports) {
    assert.ok(port < eph.low || port > eph.high, `${port} is in the ephemeral range ${eph.low}-${eph.high}`);
    assert.ok(port >= RESERVED_RANGE.low && port <= RESERVED_RANGE.high);
    assert.equal(readFileSync(lockOf(port), 'utf8'), String(process.pid));
  }
});

test('a port claimed by a live process is not handed out; a dead holder is taken over', async () => {
  // two ports of the range that nobody holds now
  const free: number[] = [];
  for (let p = RESERVED_RANGE.high; free.length < 2; p--) if (!existsSync(lockOf(p))) free.push(p);
  const [held, stale] = free as [number, number];
  writeFileSync(lockOf(held), String(process.ppid)); // the test runner: alive
  writeFileSync(lockOf(stale), String(deadPid()));
  try {
    assert.equal(claimPort(held), false, 'held by a live process');
    assert.equal(readFileSync(lockOf(held), 'utf8'), String(process.ppid), 'and left alone');
    assert.equal(claimPort(stale), true, 'a lock of a dead process is stale');
    assert.equal(readFileSync(lockOf(stale), 'utf8'), String(process.pid));
    assert.equal(claimPort(stale), false, 'claimed once');
  } finally {
    unlinkSync(lockOf(held));
  }
});
