import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { freePort, type RedisServer, startRedisServer, waitFor } from '@astra/test-support';
import { runCommand } from './support.ts';

/** The primary's name in SentinelSet's Sentinel. */
export const SENTINEL_NAME = 'outbox-test';

/** A throwaway 3-master Redis Cluster on free loopback ports, its files in a temp dir. */
export class TestCluster {
  private readonly servers: RedisServer[] = [];
  private constructor(
    readonly ports: number[],
    private readonly dir: string,
  ) {}

  static async start(masters = 3): Promise<TestCluster> {
    const dir = await mkdtemp(join(tmpdir(), 'outbox-cluster-'));
    const ports: number[] = [];
    while (ports.length < masters) {
      const port = await freePort();
      if (!ports.includes(port)) ports.push(port);
    }
    const cluster = new TestCluster(ports, dir);
    try {
      await cluster.boot();
    } catch (error) {
      await cluster.stop();
      throw error;
    }
    return cluster;
  }

  get nodes(): string[] {
    return this.ports.map((port) => `127.0.0.1:${port}`);
  }

  /** SIGKILLs one master and starts it again: it keeps its slots (its nodes file) and loses its data. */
  async restartEmpty(port: number): Promise<void> {
    const server = this.servers[this.ports.indexOf(port)];
    if (server === undefined) throw new Error(`no cluster node on port ${port}`);
    await server.kill('SIGKILL');
    await server.restart();
    for (const node of this.ports) {
      await waitFor(
        `cluster_state:ok on ${node}`,
        async () => (await this.cli(node, ['CLUSTER', 'INFO'])).includes('cluster_state:ok'),
        30_000,
      );
    }
  }

  private async boot(): Promise<void> {
    // The nodes files stay in the cluster's dir, so a restarted master keeps its slots.
    const started = await Promise.allSettled(
      this.ports.map((port) =>
        startRedisServer({
          port,
          dir: this.dir,
          args: ['--cluster-enabled', 'yes', '--cluster-config-file', join(this.dir, `nodes-${port}.conf`)],
        }),
      ),
    );
    for (const result of started) if (result.status === 'fulfilled') this.servers.push(result.value);
    for (const result of started) if (result.status === 'rejected') throw result.reason;
    await runCommand('redis-cli', [
      '--cluster',
      'create',
      ...this.nodes,
      '--cluster-replicas',
      '0',
      '--cluster-yes',
    ]);
    for (const port of this.ports) {
      await waitFor(
        `cluster_state:ok on ${port}`,
        async () => (await this.cli(port, ['CLUSTER', 'INFO'])).includes('cluster_state:ok'),
        20_000,
      );
    }
  }

  cli(port: number, args: string[]): Promise<string> {
    return runCommand('redis-cli', ['-p', String(port), ...args]);
  }

  /** The port of the master serving `key`'s slot. */
  async masterOf(key: string): Promise<number> {
    const [first] = this.ports as [number];
    const slot = Number(await this.cli(first, ['CLUSTER', 'KEYSLOT', key]));
    const nodes = await this.cli(first, ['CLUSTER', 'NODES']);
    for (const line of nodes.split('\n')) {
      const [, address = '', flags = '', , , , , , ...ranges] = line.split(' ');
      if (!flags.includes('master')) continue;
      for (const range of ranges) {
        const [low, high = low] = range.split('-').map(Number);
        if (low !== undefined && high !== undefined && slot >= low && slot <= high) {
          return Number(address.split('@')[0]?.split(':')[1]);
        }
      }
    }
    throw new Error(`no master serves slot ${slot}`);
  }

  async stop(): Promise<void> {
    await Promise.all(this.servers.splice(0).map((server) => server.kill('SIGKILL')));
    await rm(this.dir, { recursive: true, force: true });
  }
}

/** A primary, two replicas and one Sentinel (quorum 1), all local and throwaway. */
export class SentinelSet {
  private constructor(
    readonly primary: RedisServer,
    readonly replicas: RedisServer[],
    private readonly sentinel: RedisServer,
    private readonly dir: string,
  ) {}

  get sentinelPort(): number {
    return this.sentinel.port;
  }

  static async start(): Promise<SentinelSet> {
    const primary = await startRedisServer();
    const replicas = [
      await startRedisServer({ args: ['--replicaof', '127.0.0.1', String(primary.port)] }),
      await startRedisServer({ args: ['--replicaof', '127.0.0.1', String(primary.port)] }),
    ];
    const dir = mkdtempSync(join(tmpdir(), 'outbox-sentinel-'));
    const config = join(dir, 'sentinel.conf');
    // Sentinel rewrites its config file, so it gets its own writable copy.
    writeFileSync(
      config,
      [
        `sentinel monitor ${SENTINEL_NAME} 127.0.0.1 ${primary.port} 1`,
        `sentinel down-after-milliseconds ${SENTINEL_NAME} 1000`,
        `sentinel failover-timeout ${SENTINEL_NAME} 5000`,
        '',
      ].join('\n'),
    );
    const sentinel = await startRedisServer({ dir, configFile: config, args: ['--sentinel'] });
    const set = new SentinelSet(primary, replicas, sentinel, dir);
    await waitFor(
      'the sentinel seeing both replicas',
      async () => (await set.sentinelCli(['SENTINEL', 'REPLICAS', SENTINEL_NAME])).includes('slave'),
      20_000,
    );
    await waitFor(
      'both replicas in sync',
      async () => (await primary.cli(['INFO', 'replication'])).includes('connected_slaves:2'),
      20_000,
    );
    return set;
  }

  sentinelCli(args: string[]): Promise<string> {
    return this.sentinel.cli(args);
  }

  async primaryPort(): Promise<number> {
    const reply = await this.sentinelCli(['SENTINEL', 'GET-MASTER-ADDR-BY-NAME', SENTINEL_NAME]);
    return Number(reply.split('\n')[1]);
  }

  async stop(): Promise<void> {
    await this.sentinel.kill();
    await Promise.all([this.primary, ...this.replicas].map((redis) => redis.kill()));
    rmSync(this.dir, { recursive: true, force: true });
  }
}
