import type { KubeConfig } from '@kubernetes/client-node';
import type { Logger } from 'pino';
import type { ServeConfig } from './config.ts';
import { IngestServer } from './ingest/ingest-server.ts';
import { startAdminServer, type AdminServer } from './metrics/admin-server.ts';
import { Metrics } from './metrics/metrics.ts';
import { ClusterStats } from './database/cluster-stats.ts';
import { PostgresBackend } from './database/postgres-backend.ts';
import { KubeLeaseLock } from './k8s/kube-lease-lock.ts';
import { LeaderElector } from './k8s/leader-election.ts';
import type { Endpoint } from './notifications/endpoint.ts';
import { Journal } from './journal/journal.ts';
import { MemoryRelease } from './memory-release.ts';
import { AddressGuard } from './notifications/address-guard.ts';
import { EndpointSet } from './notifications/endpoint-set.ts';
import { fanOutListener } from './notifications/listener.ts';
import { Controller } from './controller/controller.ts';
import { KubeClusterApi } from './k8s/kube-cluster-api.ts';
import { loadKubeConfig } from './k8s/kube-config.ts';
import { FileSource } from './sources/file-source.ts';
import type { EndpointSource } from './sources/source.ts';
import { endpointStatuses, type EndpointStatus, type EndpointView } from './status/endpoint-status.ts';
import { USER_AGENT } from './version.ts';

/** A running server: its addresses, and `shutdown` (what SIGTERM does). */
export interface Running {
  readonly ingestUrl: string;
  readonly adminUrl: string;
  readonly endpoints: EndpointSet;
  readonly source: EndpointSource;
  /** Readiness off, ingest refuses (503), queues drain up to the grace period; resolves with what was left. */
  shutdown(): Promise<Map<string, number>>;
  /** Cuts a shutdown's drain short now (a second signal): what is still queued is given up, and logged. */
  stopDraining(): void;
  /** Events each endpoint still holds (for a last log line when the process must end at once). */
  pendingByEndpoint(): Record<string, number>;
}

/**
 * Starts everything `serve` runs, in dependency order: endpoints loaded first, then the admin server, then
 * the ingest (so the registry is never told 202 before endpoints exist). `overrides.kubeConfig` replaces the
 * cluster configuration found in the environment (tests).
 */
export async function startServer(config: ServeConfig, logger: Logger, overrides: { kubeConfig?: KubeConfig } = {}): Promise<Running> {
  const metrics = new Metrics({ endpointHistograms: config.endpointHistograms });
  const guard = new AddressGuard(config.allowEndpointCidrs);
  const journal = config.queueDir !== undefined ? Journal.open(config.queueDir, logger.child({ component: 'journal' })) : undefined;
  const database = config.databaseUrl !== undefined
    ? await PostgresBackend.open({ url: config.databaseUrl, replicaId: config.replicaId, leaseDurationMs: config.leaseDurationMs, logger: logger.child({ component: 'database' }) })
    : undefined;
  const backend = journal ?? database;
  const backendName = journal ? 'journal' : database ? 'postgres' : 'memory';
  metrics.storageAvailable(backendName, true);
  const endpoints = new EndpointSet({
    userAgent: USER_AGENT,
    guard,
    // retry.disableAfter stopping an endpoint is logged here in both modes; status and the gauge read it from the endpoint.
    listenerFor: (name) => fanOutListener(metrics.listenerFor(name), {
      autoDisabled: (message) => logger.warn({ endpoint: name, error: message }, 'endpoint stopped sending (retry.disableAfter); its queue is kept until its spec changes or it is resumed'),
    }),
    limits: { perEndpoint: config.maxPendingPerEndpoint, total: config.maxPending },
    ...(backend && { backend }),
  });
  // With a shared database, status, /endpoints and the pending gauge show what the whole cluster did. The set
  // forgets its endpoints once closed, so a shutdown keeps them here for the last report (counted while draining).
  let closing: Endpoint[] | undefined;
  const cluster = database
    ? new ClusterStats({ pool: database.pool, replicaId: config.replicaId, local: () => closing ?? endpoints.list(), owns: (name) => database.holds(name), logger: logger.child({ component: 'database' }) })
    : undefined;
  const clusterView = (endpoint: Endpoint): EndpointView => {
    const seen = cluster?.get(endpoint.name);
    return seen
      ? { name: endpoint.name, config: endpoint.config, pending: seen.pending, stats: () => seen.stats, autoDisabled: endpoint.autoDisabled }
      : endpoint;
  };
  const kubeConfig = config.kubernetes ? overrides.kubeConfig ?? loadKubeConfig() : undefined;
  // One replica writes status and Events at a time when several share a database (client-go's election); it alone
  // acts on annotation requests (replay, resume), so a new leader looks for any the previous one left.
  let controller: Controller | undefined;
  const leader = kubeConfig && database
    ? new LeaderElector({
        lock: new KubeLeaseLock(kubeConfig, config.leaderElectionLease.namespace, config.leaderElectionLease.name),
        identity: config.replicaId,
        logger: logger.child({ component: 'leader-election' }),
        onStartedLeading: () => controller?.handleRequestsLeft(),
      })
    : undefined;
  // The sources log each removal with its discarded count; the metrics forget the endpoint's series.
  const onRemoved = (name: string): void => metrics.forgetEndpoint(name);
  const source: EndpointSource = kubeConfig
    ? (controller = new Controller({
        api: new KubeClusterApi(kubeConfig),
        endpoints,
        namespaces: config.namespaces,
        tenancy: config.tenancy === 'namespace',
        statusIntervalMs: config.statusIntervalMs,
        maxStatusWritesPerSecond: config.statusWritesPerSecond,
        logger: logger.child({ component: 'controller' }),
        onRemoved,
        // The database keeps the counters over restarts: seeding from status would count them again.
        ...(cluster && { statusView: clusterView, carryCounters: false }),
        ...(leader && { writesStatus: () => leader.isLeader }),
      }))
    : new FileSource({
        paths: config.endpoints,
        secretsDir: config.secretsDir,
        secretEnv: config.secretEnv,
        endpoints,
        logger: logger.child({ component: 'file-source' }),
        onRemoved,
      });
  let draining = false;
  let admin: AdminServer | undefined;
  let ingest: IngestServer;
  try {
    await source.start();
    if (journal) forgetRemovedEndpoints(journal, endpoints, source, logger);
    cluster?.start();
    leader?.start();
    const statuses = (): EndpointStatus[] => {
      if (!cluster) return endpointStatuses(endpoints, source.states());
      return endpointStatuses({ list: () => endpoints.list().map(clusterView) }, source.states()).map((status) => {
        const owner = cluster.get(status.name)?.owner;
        return owner === undefined ? status : { ...status, owner };
      });
    };
    // Per replica, except the pending gauge with a database: one replica reports it, so sums stay right.
    metrics.setEndpointsProvider(() => statuses().map((s) => ({ ...s, pending: !cluster || cluster.reportsPending ? s.pending : undefined })));
    admin = await startAdminServer({
      host: config.metricsListen.host,
      port: config.metricsListen.port,
      metrics,
      ready: () => source.ready && !draining && (database?.healthy ?? true),
      endpoints: statuses,
      logger,
      replay: (name) => endpoints.replay(name),
      resume: (name) => endpoints.resume(name),
      ...(config.ingestToken !== undefined && { token: config.ingestToken }),
    });
    ingest = await IngestServer.start({
      host: config.listen.host,
      port: config.listen.port,
      token: config.ingestToken,
      maxBodySize: config.maxBodySize,
      endpoints,
      listener: {
        request: (code) => metrics.ingestRequest(code),
        events: (n) => metrics.ingestEvents(n),
        duplicates: (n) => metrics.ingestDuplicates(n),
        storage: (available) => metrics.storageAvailable(backendName, available),
      },
      logger: logger.child({ component: 'ingest' }),
    });
  } catch (error) {
    // A port in use must end the process: stop the file watchers, the admin server and the endpoints'
    // connection pools that were already started, or they would keep it alive after the error is reported.
    await source.close().catch(() => {});
    await admin?.close().catch(() => {});
    await endpoints.close(AbortSignal.abort()).catch(() => {});
    await leader?.stop();
    await cluster?.stop();
    journal?.close();
    await database?.close();
    throw error;
  }
  const adminServer: AdminServer = admin;
  logger.info({ ingest: ingest.url, admin: adminServer.url, endpoints: endpoints.list().length, auth: config.ingestToken !== undefined }, 'serving');
  const memory = new MemoryRelease({ logger: logger.child({ component: 'memory' }) });
  memory.start();

  let shutdown: Promise<Map<string, number>> | undefined;
  const grace = new AbortController();
  return {
    ingestUrl: ingest.url,
    adminUrl: adminServer.url,
    endpoints,
    source,
    stopDraining: () => grace.abort(),
    pendingByEndpoint: () => Object.fromEntries(endpoints.list().filter((e) => e.pending > 0).map((e) => [e.name, e.pending])),
    shutdown: () =>
      (shutdown ??= (async () => {
        draining = true;
        memory.stop();
        ingest.drain();
        await source.close();
        logger.info({ pending: endpoints.pending, graceMs: config.shutdownGraceMs }, 'shutting down: draining queues');
        closing = endpoints.list();
        const left = await endpoints.close(AbortSignal.any([grace.signal, AbortSignal.timeout(config.shutdownGraceMs)]));
        await source.finish?.();
        await leader?.stop(); // after the last status write: the next leader takes over at once
        await cluster?.stop();
        const undelivered = [...left.values()].reduce((a, b) => a + b, 0);
        const byEndpoint = Object.fromEntries([...left].filter(([, n]) => n > 0));
        // With a journal, what was not delivered stays there for the next start; with a database the other
        // replicas (or the next start) deliver it; in memory it is lost.
        if (undelivered > 0 && backend) logger.info({ undelivered, byEndpoint, keptIn: journal ? 'journal' : 'database' }, 'stopped');
        else if (undelivered > 0) logger.warn({ undelivered, byEndpoint, lost: true }, 'stopped');
        else logger.info({ undelivered }, 'stopped');
        await Promise.all([ingest.close(), adminServer.close()]);
        journal?.close();
        await database?.close();
        return left;
      })()),
  };
}

/**
 * Once the source has loaded every endpoint, what the journal still keeps for endpoints the source is sure no
 * longer exist (deleted while we were down) is dropped and logged. Endpoints known but not running (an
 * invalid spec, a missing Secret), and any endpoint while a definition file could not be read or outside the
 * watched namespaces, keep theirs.
 */
function forgetRemovedEndpoints(journal: Journal, endpoints: EndpointSet, source: EndpointSource, logger: Logger): void {
  const dropped = journal.forget((name) => !endpoints.get(name) && source.mayForget(name));
  for (const [endpoint, discarded] of dropped) {
    logger.warn({ endpoint, discarded }, 'journal: endpoint no longer exists; its pending events and dead letters are dropped');
  }
}
