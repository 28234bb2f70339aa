import assert from 'node:assert/strict';
import { test } from 'node:test';
import { waitFor } from '@astra/test-support';
import { replicationField, startRedis, withReplicatedRedis } from './lib/infra.ts';

test('a throwaway primary and replica: in sync at start, WAIT counts the replica, a wipe leaves nothing', async () => {
  await withReplicatedRedis(async (primary, replica) => {
    assert.equal(await replicationField(primary.client, 'role'), 'master');
    assert.equal(await replicationField(replica.client, 'role'), 'slave');
    await primary.client.sendCommand(['XADD', 's', '*', 'f', 'v']);
    assert.equal(await primary.client.sendCommand(['WAIT', '1', '2000']), 1);
    assert.equal(await replica.client.xLen('s'), 1);

    // A replica that syncs now writes an RDB holding 's' to its directory: nothing may load it.
    const late = await startRedis({ replicaOf: primary.port });
    try {
      await waitFor(
        'the late replica in sync',
        async () => (await replicationField(late.client, 'master_link_status')) === 'up',
        10_000,
      );
      assert.equal(await late.client.xLen('s'), 1);
    } finally {
      await late.close();
    }
    const fresh = await startRedis();
    try {
      assert.equal(await fresh.client.xLen('s'), 0, 'a new server starts empty');
    } finally {
      await fresh.close();
    }

    // The durability scenario's wipe: the primary killed and started empty; the replica follows it.
    await primary.kill();
    await primary.restart();
    assert.equal(await primary.client.xLen('s'), 0, 'the restarted primary is empty');
    await waitFor(
      'the replica resynced from the empty primary',
      async () => (await replica.client.xLen('s')) === 0,
      10_000,
    );
  });
});
