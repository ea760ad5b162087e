/**
 * No failure of any kind can freeze a replication (issue 8 item 12): every failure class of a
 * target — a synchronous throw, a rejection with something that is not an Error, a call that never
 * settles, a network error, a 4xx, a 5xx, a malformed answer — injected in front of the real local
 * and remote targets, in the destination check and in batch writes. Each is retried (or, when
 * permanent, suspends visibly until resumed) and the record arrives once the failure ends. Also:
 * header-unsafe tokens are refused with 422, a stored one suspends with its reason instead of
 * retrying forever, a paused replication says `paused` at once, and the cursor never shows
 * beyond the log's end.
 */
import assert from 'node:assert/strict';
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { isFerryError } from '../src/protocol/errors.js';
import { CheckpointStore, zeroCounters } from '../src/replication/checkpoint-store.js';
import { TargetError, type ItemOutcome, type ShipRecord, type Target } from '../src/replication/target.js';
import { ForwardingTarget } from './helpers/forwarding-target.js';
import { forEachTarget, statusOf, writeText, type ReplEnv } from './helpers/replication-env.js';
import { waitFor } from './helpers/wait.js';

type FailureClass = 'throw' | 'reject' | 'hang' | 'network' | '4xx' | '5xx' | 'malformed';
type Method = 'prepare' | 'write';

/** Fails the first `failures` calls of one method with one failure class, then passes through. */
class FaultyTarget extends ForwardingTarget {
  failed = 0;
  resets = 0;

  constructor(
    inner: Target,
    private readonly method: Method,
    private readonly cls: FailureClass,
    public failures: number,
  ) {
    super(inner);
  }

  /** Deliberately not `async`: a synchronous throw must reach the engine as such. */
  private fail(): Promise<never> {
    this.failed++;
    switch (this.cls) {
      case 'throw':
        throw new Error('thrown synchronously by the target');
      case 'reject':
        return Promise.reject('a rejection that is not an Error') as Promise<never>;
      case 'hang':
        return new Promise<never>(() => undefined);
      case 'network':
        return Promise.reject(new TargetError(-3, 'Connection error: read ECONNRESET', true));
      case '4xx':
        return Promise.reject(new TargetError(400, 'Bad request: refused by the destination', false));
      case '5xx':
        return Promise.reject(new TargetError(503, 'Service unavailable', true));
      case 'malformed':
        // alternately no array at all and an outcome of an unknown kind
        return Promise.resolve(this.failed % 2 === 1 ? undefined : [{ kind: 'bogus' }]) as Promise<never>;
    }
  }

  override prepare(): Promise<void> {
    if (this.method === 'prepare' && this.failed < this.failures) return this.fail();
    return this.inner.prepare();
  }

  override write(entry: string, records: readonly ShipRecord[]): Promise<ItemOutcome[]> {
    if (this.method === 'write' && this.failed < this.failures) return this.fail();
    return this.inner.write(entry, records);
  }

  override reset(): Promise<void> {
    this.resets++;
    return this.inner.reset();
  }
}

/** A target call that has not settled after 4 × this is abandoned (the watchdog). */
const TIMEOUT_ENV = { RS_REPLICATION_TIMEOUT: '250ms' };
const FAST_RETRY = { retry: { initial_ms: 20, max_ms: 50 } };

const MESSAGES: Record<FailureClass, RegExp> = {
  throw: /thrown synchronously/,
  reject: /not an Error/,
  hang: /did not finish within 10\d\d ms/,
  network: /ECONNRESET/,
  '4xx': /Bad request/,
  '5xx': /Service unavailable/,
  malformed: /Malformed answer/,
};

/** One environment whose replication 'r' gets a FaultyTarget; returns the fault. */
function faulty(method: Method, cls: FailureClass, failures: number) {
  const holder: { fault?: FaultyTarget } = {};
  return {
    holder,
    opts: {
      env: TIMEOUT_ENV,
      wrapTarget: (t: Target) => (holder.fault = new FaultyTarget(t, method, cls, failures)),
    },
  };
}

async function delivered(env: ReplEnv, n: number, message: string): Promise<void> {
  await waitFor(() => statusOf(env.manager, 'r').counters.records_written === n, {
    timeoutMs: 15_000,
    message,
  });
}

for (const method of ['prepare', 'write'] as const) {
  for (const cls of ['throw', 'reject', 'hang', 'network', '5xx', 'malformed'] as const) {
    if (method === 'prepare' && cls === 'malformed') continue; // prepare answers nothing
    const { holder, opts } = faulty(method, cls, 2);
    forEachTarget(
      `${method}: a target that fails with '${cls}' is retried until the record arrives`,
      async (env) => {
        await env.replicate('r', FAST_RETRY);
        await writeText(env.storage, 'src', 'e', 1n, 'one');
        await delivered(env, 1, 'the record to arrive after the failures');
        const st = statusOf(env.manager, 'r');
        assert.equal(holder.fault!.failed, 2);
        assert.ok(st.retries >= 2, `retries ${st.retries}`);
        assert.match(st.last_error?.message ?? '', MESSAGES[cls]);
        assert.equal(st.state, 'idle');
        if (cls === 'hang') assert.ok(holder.fault!.resets >= 2, 'the abandoned calls were cut off');
        // the loop is alive: the next record goes through at once
        await writeText(env.storage, 'src', 'e', 2n, 'two');
        await delivered(env, 2, 'the next record');
      },
      { ...opts, timeout: 60_000 },
    );
  }
  const { holder, opts } = faulty(method, '4xx', 1);
  forEachTarget(
    `${method}: a permanent 4xx suspends with its reason; resuming retries and delivers`,
    async (env) => {
      await env.replicate('r', FAST_RETRY);
      await writeText(env.storage, 'src', 'e', 1n, 'one');
      const st = await waitFor(
        () => {
          const s = statusOf(env.manager, 'r');
          return s.state === 'suspended' ? s : false;
        },
        { message: 'suspended' },
      );
      assert.match(st.state_reason ?? '', MESSAGES['4xx']);
      assert.equal(holder.fault!.failed, 1);
      await env.manager.setMode('r', { mode: 'enabled' });
      await delivered(env, 1, 'the record after resuming');
    },
    opts,
  );
}

{
  const { holder, opts } = faulty('write', 'hang', Number.MAX_SAFE_INTEGER);
  forEachTarget(
    'pause while a call hangs: paused at once, and enabling again resumes delivery',
    async (env) => {
      await env.replicate('r', FAST_RETRY);
      await writeText(env.storage, 'src', 'e', 1n, 'one');
      await waitFor(() => holder.fault!.failed >= 1, { message: 'a hanging write' });
      await env.manager.setMode('r', { mode: 'paused' });
      assert.equal(statusOf(env.manager, 'r').state, 'paused');
      assert.equal(statusOf(env.manager, 'r').state_reason, 'mode is paused');
      // the watchdog gives up on the hanging call meanwhile; still paused
      await waitFor(() => holder.fault!.resets >= 1, { message: 'the hanging call abandoned' });
      assert.equal(statusOf(env.manager, 'r').state, 'paused');
      holder.fault!.failures = 0;
      await env.manager.setMode('r', { mode: 'enabled' });
      assert.notEqual(statusOf(env.manager, 'r').state, 'paused');
      await delivered(env, 1, 'the record after enabling');
    },
    opts,
  );
}

forEachTarget(
  'dst_token that cannot travel in an HTTP header is refused with 422 naming the field',
  async (env) => {
    await env.storage.createBucket('src');
    for (const token of ['ab…', 'a\r\nx-evil: 1', 'with space', '\u0000', 'x'.repeat(5000)]) {
      await assert.rejects(
        env.replicate('r', { dst_token: token }),
        (e: unknown) => isFerryError(e) && e.status === 422 && /dst_token/.test(e.message),
        JSON.stringify(token.slice(0, 20)),
      );
    }
    await env.replicate('r', { dst_token: 'fine-token_0123.~+/=' });
  },
  { kinds: ['remote'] },
);

forEachTarget(
  'a stored definition with such a token suspends with the reason instead of retrying forever',
  async (env) => {
    await env.replicate('r', FAST_RETRY);
    await env.manager.close();
    const path = join(env.dir, '.ferry', 'replications.json');
    const text = await readFile(path, 'utf8');
    assert.ok(text.includes('dst-token'));
    await writeFile(path, text.replace('dst-token', 'dst…token'));
    await env.reopen();
    await writeText(env.storage, 'src', 'e', 1n, 'one');
    const st = await waitFor(
      () => {
        const s = statusOf(env.manager, 'r');
        return s.state === 'suspended' ? s : false;
      },
      { message: 'suspended' },
    );
    assert.match(st.state_reason ?? '', /dst_token.*printable ASCII/);
    assert.equal(st.next_retry_at, null);
  },
  { kinds: ['remote'] },
);

forEachTarget(
  'a cursor beyond the end of the log is moved back and flagged; new writes arrive',
  async (env) => {
    await env.replicate('r');
    await writeText(env.storage, 'src', 'e', 1n, 'one');
    await delivered(env, 1, 'the first record');
    await env.manager.close();
    const last = env.storage.changes.lastLsn();
    // a checkpoint from a log that had more entries than this one (lost tail, reset log)
    await new CheckpointStore(join(env.dir, '.ferry', 'replications'), 'r', false).save({
      lsn: last + 50n,
      filter: {},
      counters: { ...zeroCounters(), records_written: 1 },
      needs_verify: false,
      needs_verify_reason: null,
      suspended_reason: null,
      destination_instance: '',
    });
    await env.reopen();
    const st = statusOf(env.manager, 'r');
    assert.ok(st.cursor_lsn <= st.log_last_lsn, `cursor ${st.cursor_lsn} > log ${st.log_last_lsn}`);
    assert.equal(st.needs_verify, true);
    assert.match(st.needs_verify_reason ?? '', /change log ends/);
    await writeText(env.storage, 'src', 'e', 2n, 'two');
    await delivered(env, 2, 'the write after the restart');
    const after = statusOf(env.manager, 'r');
    assert.ok(after.cursor_lsn <= after.log_last_lsn);
  },
);
