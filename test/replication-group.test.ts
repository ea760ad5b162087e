/**
 * Consistency-group replications (`src_group`, replication.md §8, issue 12) on the one engine, to
 * a bucket of the same instance and to another Ferry: every member is shipped in one LSN order to
 * a destination bucket of its name (with `dst_prefix`), a reader of the destination never sees a
 * later record without every earlier one (checked on every poll), batches arrive whole, and both
 * sides end equal, labels included. Also: members added and removed live, a permanent error on one
 * member stops the whole group naming it, and the refusals of definitions that cannot work.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { forEachTarget, statusOf, withReplEnv, type ReplEnv } from './helpers/replication-env.js';
import {
  dumpMembers,
  GroupWriter,
  PrefixReader,
  storageSide,
  type GroupSide,
} from './helpers/group-workload.js';
import { REPLAY, seededRandom } from './helpers/seed.js';
import { waitFor } from './helpers/wait.js';
import { stringifyJson } from '../src/protocol/json.js';
import { ReplicationMonitor } from '../src/replication/monitor.js';
import type { GroupMemberStatus, GroupStatus } from '../src/protocol/replication-status.js';

const MEMBERS = ['cam', 'lidar', 'pose'];
const PREFIX = 'copy-';

async function setupGroup(env: ReplEnv, members = MEMBERS): Promise<void> {
  for (const b of [...MEMBERS, 'other']) if (!env.storage.hasBucket(b)) await env.storage.createBucket(b);
  await env.groups.create('robot', { buckets: members });
}

/** Creates group replication 'g' of group 'robot' to the destination, buckets prefixed. */
const replicateGroup = (env: ReplEnv, extra: Record<string, unknown> = {}): Promise<void> =>
  env.manager.create('g', { src_group: 'robot', dst_prefix: PREFIX, ...env.destination, ...extra });

/** The source and the destination as workload sides. */
const sides = (env: ReplEnv): [GroupSide, GroupSide] => [
  storageSide(() => env.storage),
  storageSide(() => env.dst),
];

async function drained(env: ReplEnv, name: string, timeoutMs = 30_000): Promise<void> {
  const done = (): boolean => {
    const st = statusOf(env.manager, name);
    return st.cursor_lsn >= env.storage.changes.lastLsn() && st.pending_records === 0 && st.state === 'idle';
  };
  await waitFor(done, { timeoutMs }).catch((e: Error) => {
    const st = env.manager.inspect(name).status;
    throw new Error(`replication ${name} not drained: ${e.message}; status ${stringifyJson(st)}`);
  });
}

forEachTarget(
  'a group replication keeps the destination a prefix of the source on every poll; both sides end equal',
  async (env) => {
    await setupGroup(env);
    await replicateGroup(env, { batch: { max_records: 4 } });
    const [src, dst] = sides(env);
    const random = seededRandom(`group-prefix-${env.kind}`);
    const writer = new GroupWriter(src, random, MEMBERS);
    const reader = new PrefixReader(
      dst,
      (m) => PREFIX + m,
      () => MEMBERS,
      writer.placeOf,
      writer.batchOf,
    );
    reader.start();
    for (let i = 0; i < 400; i++) {
      await writer.step();
      if (i % 50 === 0)
        await env.storage.bucket('other').write('x', BigInt(i + 1), { size: 1 }, Buffer.from('o'));
      // a record that came from the destination is never sent back (loop prevention)
      if (i % 100 === 0)
        await env.storage
          .bucket('pose')
          .write('echo', BigInt(i + 1), { size: 1, origin: env.dst.instanceId }, Buffer.from('d'));
    }
    await drained(env, 'g');
    assert.equal(env.dst.bucket(`${PREFIX}pose`).hasEntry('echo'), false, 'an echo was sent back');
    assert.ok(statusOf(env.manager, 'g').counters.records_loop_skipped >= 4);
    // records of the source's clients arrive with the source as their origin
    const camRecord = await env.dst.bucket(`${PREFIX}cam`).read('e');
    assert.equal(camRecord.meta.origin, env.storage.instanceId);
    await reader.stop();
    assert.equal(reader.violation, null, `${reader.violation} (${REPLAY})`);
    assert.ok(reader.polls > 20, `the reader polled ${reader.polls} times`);
    assert.deepEqual(
      await dumpMembers(
        dst,
        MEMBERS.map((m) => PREFIX + m),
      ),
      await dumpMembers(src, MEMBERS),
      REPLAY,
    );
    assert.equal(env.dst.hasBucket(`${PREFIX}other`), false, 'a bucket outside the group is not shipped');
    const st = env.manager.inspect('g').status as {
      group: {
        name: string;
        delivered_lsn: bigint;
        members: Array<{ bucket: string; records_shipped: number }>;
      };
      counters: Record<string, number>;
    };
    assert.equal(st.group.name, 'robot');
    assert.equal(st.group.delivered_lsn, env.storage.changes.lastLsn());
    assert.deepEqual(
      st.group.members.map((m) => m.bucket),
      MEMBERS,
    );
    const shipped = st.group.members.reduce((n, m) => n + m.records_shipped, 0);
    assert.equal(shipped, writer.seq, 'every record was shipped once');
    assert.equal(st.counters.records_written, writer.seq);
    // the monitor's status route and active_tasks carry the group's figures too
    const monitor = new ReplicationMonitor(env.manager, { sampleMs: 0 });
    try {
      const routed = monitor.status('g');
      assert.deepEqual(routed.source, { bucket: '', entries: [], group: 'robot' });
      assert.deepEqual(routed.group, st.group);
      const active = monitor.activeTasks().tasks.find((t) => t.name === 'g') as { group?: unknown };
      assert.deepEqual(active.group, st.group);
    } finally {
      monitor.close();
    }
  },
  { timeout: 120_000 },
);

forEachTarget('a permanent error on one member stops the whole group, naming the member', async (env) => {
  await setupGroup(env);
  // the destination holds another record where 'pose' will write: a conflict no retry changes
  await env.dst.createBucket(`${PREFIX}pose`);
  await env.dst.bucket(`${PREFIX}pose`).write('e', 5n, { size: 5 }, Buffer.from('other'));
  await replicateGroup(env);
  const w = (b: string, ts: bigint): Promise<unknown> =>
    env.storage.bucket(b).write('e', ts, { size: 4, labels: { seq: String(ts) } }, Buffer.from('mine'));
  for (const [b, ts] of [
    ['cam', 1n],
    ['lidar', 2n],
    ['cam', 3n],
    ['lidar', 4n],
  ] as const)
    await w(b, ts);
  await drained(env, 'g');
  await w('pose', 5n);
  await w('cam', 6n);
  await w('lidar', 7n);
  const st = await waitFor(
    () => {
      const s = statusOf(env.manager, 'g');
      return s.state === 'suspended' ? s : null;
    },
    { timeoutMs: 20_000, message: 'suspended' },
  );
  assert.match(st.state_reason ?? '', /member 'pose'/, String(st.state_reason));
  const seqs = async (b: string): Promise<string[]> =>
    (await storageSide(() => env.dst).read(b, 'e')).map((r) => r.labels.seq ?? '?');
  // nothing after the refused commit, of any member
  assert.deepEqual(await seqs(`${PREFIX}cam`), ['1', '3']);
  assert.deepEqual(await seqs(`${PREFIX}lidar`), ['2', '4']);
  // stays stopped
  await new Promise((r) => setTimeout(r, 300));
  assert.equal(statusOf(env.manager, 'g').state, 'suspended');
  assert.deepEqual(await seqs(`${PREFIX}cam`), ['1', '3']);
});

test("a commit larger than a destination member's FIFO quota suspends the group, naming the member", async () => {
  // applied whole, a shipment cannot make room within itself: no retry changes that (README)
  await withReplEnv('local', async (env) => {
    await setupGroup(env);
    await env.dst.createBucket(`${PREFIX}cam`, { quota_type: 'FIFO', quota_size: 2048n });
    await replicateGroup(env);
    const src = storageSide(() => env.storage);
    const rec = (ts: bigint) => ({ ts, body: Buffer.alloc(1024, 1), labels: {}, contentType: 'x' });
    await src.write('lidar', 'e', [rec(1n)]);
    await src.write('cam', 'e', [rec(2n), rec(3n), rec(4n)]); // one commit of 3 KiB
    const st = await waitFor(
      () => {
        const s = statusOf(env.manager, 'g');
        return s.state === 'suspended' ? s : null;
      },
      { timeoutMs: 20_000, message: 'suspended' },
    );
    assert.match(
      st.state_reason ?? '',
      /member 'cam'.*3072 bytes .*FIFO quota of 2048/,
      String(st.state_reason),
    );
    assert.equal((await storageSide(() => env.dst).read(`${PREFIX}cam`, 'e')).length, 0);
  });
});

forEachTarget(
  'a member added to a replicated group gets its existing records copied first; the others keep their order',
  async (env) => {
    await setupGroup(env, ['cam', 'lidar']);
    await replicateGroup(env, { batch: { max_records: 4 } });
    const [src, dst] = sides(env);
    const random = seededRandom(`group-add-${env.kind}`);
    const writer = new GroupWriter(src, random, ['cam', 'lidar']);
    const members = ['cam', 'lidar'];
    const reader = new PrefixReader(
      dst,
      (m) => PREFIX + m,
      () => members,
      writer.placeOf,
      writer.batchOf,
    );
    // pose holds records before it joins (and gets more while the others are written)
    const poseWriter = new GroupWriter(src, seededRandom(`group-add-pose-${env.kind}`), ['pose']);
    poseWriter.seq = 1_000_000;
    reader.start();
    for (let i = 0; i < 60; i++) {
      await writer.step();
      if (i % 3 === 0) await poseWriter.step();
    }
    await env.groups.update('robot', { buckets: ['cam', 'lidar', 'pose'] });
    for (let i = 0; i < 60; i++) {
      await writer.step();
      if (i % 3 === 0) await poseWriter.step();
    }
    await waitFor(() => statusOf(env.manager, 'g').state === 'idle', { timeoutMs: 30_000, message: 'idle' });
    await drained(env, 'g');
    await reader.stop();
    assert.equal(reader.violation, null, `${reader.violation} (${REPLAY})`);
    assert.deepEqual(
      await dumpMembers(
        dst,
        ['cam', 'lidar', 'pose'].map((m) => PREFIX + m),
      ),
      await dumpMembers(src, ['cam', 'lidar', 'pose']),
      REPLAY,
    );
    // once copied, the new member is listed with the others
    const st = env.manager.inspect('g').status as {
      group: { copying?: string; members: Array<{ bucket: string }> };
    };
    assert.equal(st.group.copying, undefined);
    assert.deepEqual(
      st.group.members.map((m) => m.bucket),
      ['cam', 'lidar', 'pose'],
    );
  },
  { timeout: 120_000 },
);

forEachTarget('members removed from a group are not shipped any more; the others go on', async (env) => {
  await setupGroup(env);
  await replicateGroup(env);
  const w = (b: string, ts: bigint): Promise<unknown> =>
    env.storage.bucket(b).write('e', ts, { size: 1, labels: { seq: String(ts) } }, Buffer.from('x'));
  await w('cam', 1n);
  await w('lidar', 2n);
  await drained(env, 'g');
  await env.groups.update('robot', { buckets: ['cam', 'pose'] });
  await w('lidar', 3n);
  await w('cam', 4n);
  await w('pose', 5n);
  await waitFor(async () => (await storageSide(() => env.dst).read(`${PREFIX}pose`, 'e')).length === 1, {
    timeoutMs: 20_000,
    message: 'pose shipped',
  });
  await drained(env, 'g');
  const seqs = async (b: string): Promise<string[]> =>
    (await storageSide(() => env.dst).read(b, 'e')).map((r) => r.labels.seq ?? '?');
  assert.deepEqual(await seqs(`${PREFIX}cam`), ['1', '4']);
  assert.deepEqual(
    await seqs(`${PREFIX}lidar`),
    ['2'],
    'lidar left the group: its later write stays at the source',
  );
  const st = env.manager.inspect('g').status as { group: { members: Array<{ bucket: string }> } };
  assert.deepEqual(
    st.group.members.map((m) => m.bucket),
    ['cam', 'pose'],
  );
});

forEachTarget(
  'members removed and added back end equal at the destination: what they got while out, labels included',
  async (env) => {
    // lidar is a member from the start; pose joins by a member copy (its copy streams exist then)
    const out = ['lidar', 'pose'];
    const how: Record<string, string> = { lidar: 'a member from the start', pose: 'joined by a member copy' };
    await setupGroup(env, ['cam', 'lidar']);
    await replicateGroup(env);
    const [src, dst] = sides(env);
    const rec = (ts: bigint, tag: string) => ({
      ts,
      labels: { seq: String(ts), tag },
      contentType: 'text/plain',
      body: Buffer.from(`${tag}-${ts}`),
    });
    const shown = (want: string[]) => () => {
      const st = env.manager.inspect('g').status as {
        group?: { copying?: string; members: Array<{ bucket: string }> };
      };
      const group = st.group;
      return group?.copying === undefined && group?.members.map((m) => m.bucket).join() === want.join();
    };
    for (const m of out) {
      await src.write(m, 'e', [rec(10n, 'in'), rec(20n, 'in'), rec(30n, 'in')]);
      await src.write(m, 'f/g', [rec(15n, 'in'), rec(25n, 'in')]);
    }
    await src.write('cam', 'e', [rec(11n, 'in'), rec(21n, 'in')]);
    await drained(env, 'g');
    await env.groups.update('robot', { buckets: ['cam', 'lidar', 'pose'] });
    await waitFor(shown(['cam', 'lidar', 'pose']), { timeoutMs: 10_000, message: 'pose copied' });
    await drained(env, 'g');
    for (const m of out) assert.equal((await dst.read(PREFIX + m, 'e')).length, 3, m);

    await env.groups.update('robot', { buckets: ['cam'] });
    await waitFor(shown(['cam']), { timeoutMs: 10_000, message: 'lidar and pose left the group' });
    // while out: newer records, older ones between (and before) the shipped ones, a label update
    for (const m of out) {
      await src.write(m, 'e', [rec(40n, 'out'), rec(50n, 'out')]);
      await src.write(m, 'e', [rec(15n, 'out')]);
      await src.write(m, 'e', [rec(25n, 'out'), rec(5n, 'out')]);
      await src.write(m, 'f/g', [rec(20n, 'out'), rec(35n, 'out')]);
      await src.updateLabels(m, 'e', 20n, { tag: 'relabelled' });
    }
    await src.write('cam', 'e', [rec(31n, 'out'), rec(12n, 'out')]);
    await drained(env, 'g');
    for (const m of out) assert.equal((await dst.read(PREFIX + m, 'e')).length, 3, `${m} shipped while out`);

    await env.groups.update('robot', { buckets: ['cam', 'lidar', 'pose'] });
    for (const m of out) await src.write(m, 'e', [rec(60n, 'back'), rec(26n, 'back')]);
    await src.write('cam', 'e', [rec(61n, 'back')]);
    await waitFor(shown(['cam', 'lidar', 'pose']), {
      timeoutMs: 10_000,
      message: 'lidar and pose copied again',
    });
    await drained(env, 'g');
    for (const m of ['cam', ...out])
      assert.deepEqual(await dumpMembers(dst, [PREFIX + m]), await dumpMembers(src, [m]), how[m] ?? m);
  },
);

/** A server that answers like a plain ReductStore: no x-ferry-instance header. */
async function plainReductStore(): Promise<{ url: string; server: Server }> {
  const server = createServer((req, res) => {
    res.setHeader('x-reduct-api', '1.21');
    res.statusCode = 404;
    res.setHeader('x-reduct-error', 'Not found');
    res.end();
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, server };
}

forEachTarget('group replications refuse what cannot work, with the field or the reason', async (env) => {
  await setupGroup(env);
  const base = { src_group: 'robot', dst_prefix: PREFIX, ...env.destination };
  const refused = async (body: Record<string, unknown>, status: number, message: RegExp): Promise<void> => {
    await assert.rejects(env.manager.create('bad', body), (e: { status: number; message: string }) => {
      assert.equal(e.status, status, e.message);
      assert.match(e.message, message);
      return true;
    });
  };
  await refused({ ...base, src_bucket: 'cam' }, 422, /src_group.*src_bucket/);
  await refused({ ...base, dst_bucket: 'x' }, 422, /dst_bucket/);
  await refused({ ...base, src_group: 'nope' }, 404, /Group 'nope' does not exist/);
  await refused({ ...base, replication_type: 'sync' }, 422, /replication_type/);
  await refused({ ...base, since: 0 }, 422, /since/);
  if (env.kind === 'local') await refused({ ...base, dst_prefix: '' }, 422, /must be different/);
  const plain = await plainReductStore();
  try {
    await refused(
      { src_group: 'robot', dst_host: plain.url },
      422,
      /cannot apply a group's shipments atomically: it is not a Ferry server/,
    );
  } finally {
    plain.server.close();
  }
  assert.deepEqual(env.manager.list().replications, []);
});

test('group replications survive a restart of the source: the cursor, the stream and the per-member figures go on', async () => {
  // covered with SIGKILLs of both sides in replication-group-crash.test.ts; this is the clean path
  await withReplEnv('remote', async (env) => {
    await setupGroup(env);
    await replicateGroup(env);
    const src = storageSide(() => env.storage);
    const writer = new GroupWriter(src, seededRandom('group-restart'), MEMBERS);
    for (let i = 0; i < 50; i++) await writer.step();
    await drained(env, 'g');
    const members = (): GroupMemberStatus[] =>
      (statusOf(env.manager, 'g') as unknown as { group: GroupStatus }).group.members;
    const before = members();
    assert.ok(
      before.every((m) => m.records_shipped > 0 && m.delivered_lsn > 0n),
      stringifyJson(before),
    );
    await env.reopen();
    // (the task loads its checkpoint as it starts: the counters come back then, and so do these)
    await waitFor(() => statusOf(env.manager, 'g').counters.records_read > 0, { timeoutMs: 5_000 });
    assert.deepEqual(members(), before, 'figures as before the restart');
    for (let i = 0; i < 50; i++) await writer.step();
    await drained(env, 'g');
    const after = members();
    const records = await dumpMembers(src, MEMBERS);
    for (const m of after) {
      const i = MEMBERS.indexOf(m.bucket);
      let stored = 0;
      for (const [k, list] of records) if (k.startsWith(`${i}/`)) stored += list.length;
      assert.equal(m.records_shipped, stored, `${m.bucket}: every record shipped once, counted once`);
    }
    assert.deepEqual(
      await dumpMembers(
        storageSide(() => env.dst),
        MEMBERS.map((m) => PREFIX + m),
      ),
      await dumpMembers(src, MEMBERS),
      REPLAY,
    );
  });
});
