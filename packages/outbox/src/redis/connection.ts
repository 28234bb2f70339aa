import { createClient, createCluster, createSentinel } from '@redis/client';
import { invalidOption } from '../errors.ts';

/** Which Redis: one server, a Cluster, or the primary a set of Sentinels names. Give at most one. */
export interface RedisTarget {
  /** One Redis server, e.g. 'redis://127.0.0.1:6379'. */
  url?: string;
  /** Seed nodes of a Redis Cluster, as 'host:port'. */
  clusterNodes?: string[];
  /** Redis Sentinel: the sentinels, as 'host:port', and the monitored primary's name. Follows failovers. */
  sentinel?: { nodes: string[]; name: string };
}

export type ResolvedRedisTarget =
  | { kind: 'server'; url: string }
  | { kind: 'cluster'; nodes: string[] }
  | { kind: 'sentinel'; nodes: string[]; name: string };

const HOST_PORT = /^[^\s:]+:\d{1,5}$/;

/** Checks a target; none given means the local default server. */
export function resolveRedisTarget(target: RedisTarget): ResolvedRedisTarget {
  const { url, clusterNodes, sentinel } = target;
  const given = [url, clusterNodes?.length ? clusterNodes : undefined, sentinel];
  if (given.filter((value) => value !== undefined).length > 1)
    throw invalidOption('clusterNodes', 'give one of url, clusterNodes and sentinel');
  if (sentinel !== undefined) {
    const { nodes, name } = sentinel;
    if (!Array.isArray(nodes) || nodes.length === 0 || nodes.some((node) => !HOST_PORT.test(node)))
      throw invalidOption('sentinel.nodes', 'must be a non-empty list of host:port');
    if (typeof name !== 'string' || name === '') throw invalidOption('sentinel.name', 'is required');
    return { kind: 'sentinel', nodes: [...nodes], name };
  }
  if (clusterNodes !== undefined && clusterNodes.length > 0) {
    if (!Array.isArray(clusterNodes) || clusterNodes.some((node) => !HOST_PORT.test(node)))
      throw invalidOption('clusterNodes', 'must be a list of host:port');
    return { kind: 'cluster', nodes: [...clusterNodes] };
  }
  const server = url ?? 'redis://127.0.0.1:6379';
  if (typeof server !== 'string' || !/^rediss?:\/\//.test(server))
    throw invalidOption('url', 'must be a redis:// or rediss:// URL');
  return { kind: 'server', url: server };
}

/** The subset of a node-redis client, cluster or sentinel client that the publisher and consumer use. */
export interface RedisConnection {
  /** Sends one command; in a cluster `firstKey` picks the node (keyless commands go to any). */
  send(firstKey: string | undefined, args: string[]): Promise<unknown>;
  /** Sends the commands together on one socket, so a WAIT counts the writes before it. */
  pipeline(firstKey: string | undefined, commands: string[][]): Promise<unknown[]>;
  connect(): Promise<void>;
  destroy(): void;
}

export interface ConnectionSettings {
  /** Longest wait for a connection. */
  connectTimeoutMs: number;
  /** Cap on commands queued on a connection. @defaultValue node-redis's (none) */
  commandsQueueMaxLength?: number;
  /** Reply protocol; RESP2 gives plain arrays, whatever the client's default. @defaultValue node-redis's */
  resp?: 2;
}

function reconnectDelay(retries: number): number {
  return Math.min(2000, 50 * 2 ** Math.min(retries, 6)) * (0.5 + Math.random() / 2);
}

function hostPort(node: string): { host: string; port: number } {
  const at = node.lastIndexOf(':');
  return { host: node.slice(0, at), port: Number(node.slice(at + 1)) };
}

/** Makes new connections to the target; each call opens a connection (or cluster client) of its own. */
export function redisConnectionFactory(
  target: ResolvedRedisTarget,
  settings: ConnectionSettings,
): () => RedisConnection {
  const socket = { connectTimeout: settings.connectTimeoutMs, reconnectStrategy: reconnectDelay };
  // Cluster and Sentinel clients impose their own RESP on their node clients: it is set at both levels.
  const resp = settings.resp === undefined ? {} : { RESP: settings.resp };
  // No offline queue: while disconnected every call fails at once instead of piling up in memory.
  const common = {
    disableOfflineQueue: true,
    socket,
    ...(settings.commandsQueueMaxLength === undefined
      ? {}
      : { commandsQueueMaxLength: settings.commandsQueueMaxLength }),
    ...resp,
  };
  if (target.kind === 'sentinel') {
    return () => {
      const client = createSentinel({
        name: target.name,
        sentinelRootNodes: target.nodes.map(hostPort),
        ...resp,
        nodeClientOptions: common,
        sentinelClientOptions: { socket },
      });
      client.on('error', () => {});
      return {
        send: (_firstKey, args) => client.sendCommand(false, args),
        pipeline: (_firstKey, commands) => {
          const multi = client.multi();
          for (const command of commands) multi.addCommand(false, command);
          return multi.execAsPipeline();
        },
        connect: async () => {
          await client.connect();
        },
        destroy: () => client.destroy(),
      };
    };
  }
  if (target.kind === 'cluster') {
    return () => {
      const cluster = createCluster({
        rootNodes: target.nodes.map((node) => ({ url: `redis://${node}` })),
        defaults: common,
        useReplicas: false,
        ...resp,
      });
      cluster.on('error', () => {});
      return {
        send: (firstKey, args) => cluster.sendCommand(firstKey, false, args),
        pipeline: (firstKey, commands) => {
          const multi = cluster.multi(firstKey);
          for (const command of commands) multi.addCommand(firstKey, false, command);
          return multi.execAsPipeline();
        },
        connect: async () => {
          await cluster.connect();
        },
        destroy: () => cluster.destroy(),
      };
    };
  }
  return () => {
    const client = createClient({ url: target.url, ...common });
    // Errors also surface on the calls; without a listener node-redis would crash the process.
    client.on('error', () => {});
    return {
      send: (_firstKey, args) => client.sendCommand(args),
      pipeline: (_firstKey, commands) => {
        const multi = client.multi();
        for (const command of commands) multi.addCommand(command);
        return multi.execAsPipeline();
      },
      connect: async () => {
        await client.connect();
      },
      destroy: () => client.destroy(),
    };
  };
}
