import assert from 'node:assert/strict';
import { test } from 'node:test';
import { replicationField, waitFor, withReplicatedRedis } from './lib/infra.ts';

test('a throwaway primary and replica: in sync at start, WAIT counts the replica, a wipe reaches it', async () => {
  await withReplicatedRedis(async (primary, replica) => {
    assert.equal(await replicationField(primary.client, 'role'), 'master');
    assert.equal(await replicationField(replica.client, 'role'), 'slave');
    await primary.client.sendCommand(['XADD', 's', '*', 'f', 'v']);
    assert.equal(await primary.client.sendCommand(['WAIT', '1', '2000']), 1);
    assert.equal(await replica.client.xLen('s'), 1);

    // The durability scenario's wipe: the primary killed and started empty; the replica follows it.
    await primary.kill();
    await primary.restart();
    await waitFor(
      'the replica resynced from the empty primary',
      async () => (await replica.client.xLen('s')) === 0,
      10_000,
    );
    assert.equal(await primary.client.xLen('s'), 0);
  });
});
