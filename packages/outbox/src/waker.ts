import { type OutboxOptions, resolveOutboxOptions } from './options.ts';
import type { SqlClient } from './sql/client.ts';

export interface RelayWaker {
  /**
   * Asks the relays to look at the outbox now. Call it after your transaction committed. Never
   * throws and never waits: a lost wake-up costs at most one relay poll interval.
   */
  wake(): void;
}

/** What the waker needs of a relay in the writer's own process (an OutboxRelay). */
export interface LocalRelay {
  wake(): void;
  readonly ownsAllPartitions: boolean;
}

export interface RelayWakerOptions extends OutboxOptions {
  /**
   * A relay running in this process. While it owns every partition (it is the only relay), wake()
   * wakes it with a function call and sends no NOTIFY: no PostgreSQL round trip between a commit and
   * its publish, and no notification traffic. While other relays share the partitions, wake() sends
   * the NOTIFY, which wakes this relay too.
   */
  localRelay?: LocalRelay;
}

/**
 * Wakes the relays after commit instead of inside the writing transaction (writer option
 * `notify: false`). A NOTIFY inside a transaction holds PostgreSQL's notification lock from its commit
 * until that commit is flushed to disk, so notifying writers commit one at a time and cannot share a
 * WAL flush; a NOTIFY sent alone writes nothing and holds the lock for microseconds. Calls coalesce:
 * at most one NOTIFY is in flight, followed by at most one more for every wake() made meanwhile.
 * Give it a connection of its own (a pool of one): on the application's pool under load, a wake-up
 * waits for a free connection behind the very transactions it is meant to announce.
 */
export function createRelayWaker(db: SqlClient, options: RelayWakerOptions = {}): RelayWaker {
  const { channel } = resolveOutboxOptions(options);
  const { localRelay } = options;
  let inFlight = false;
  let again = false;
  const send = () => {
    inFlight = true;
    again = false;
    db.query({ name: `outbox_wake_${channel}`, text: 'SELECT pg_notify($1, NULL)', values: [channel] })
      .catch(() => {})
      .finally(() => {
        inFlight = false;
        if (again) send();
      });
  };
  return {
    wake() {
      if (localRelay?.ownsAllPartitions === true) localRelay.wake();
      else if (inFlight) again = true;
      else send();
    },
  };
}
