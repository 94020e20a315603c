import crypto from 'node:crypto';
import { execFile } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { promisify } from 'node:util';
import { CONTAINER_LABELS } from '../shared/container-contract.js';
import { coerceError } from '../shared/errors.js';
import type { Logger } from '../shared/logger.js';
import type { ClientConfig } from './config.js';
import type { ContainerEngine } from './container-engine.js';
import { NetworkSlotPool } from './network-slots.js';
import { SparqlGateway } from './sparql-gateway.js';

const run = promisify(execFile);

/** How a container reaches SPARQL: per-run URL and a release when the run is over. */
export interface ContainerNetworking {
  networkMode: string;
  /** Name servers for the container (see ContainerSpec.dns). */
  dns?: string[];
  /** Registers the run at the SPARQL gateway; `token` re-registers a run found after a restart. */
  sparqlFor(runId: number, token: string | null): { url: string; token: string | null; release(): void };
  /**
   * Where a new run's container goes when it is not `networkMode`/`dns` (gateway mode with network
   * slots: a prepared namespace, `container:<holder>`). Called after sparqlFor; the sparqlFor
   * release frees it too, so call that only once the container has stopped.
   */
  placeRun?(runId: number): Promise<{ networkMode: string; dns: string[] }>;
  /**
   * Called before each container is created: null when its protections are in place, else the
   * reason no container may run (the run fails with it).
   */
  check?(): Promise<string | null>;
}

/** Networking set up by {@link prepareContainerNetworking}; `close` removes what it created. */
export interface PreparedNetworking extends ContainerNetworking {
  close(): Promise<void>;
}

export interface NetworkingDeps {
  engine: ContainerEngine;
  config: ClientConfig;
  site: string;
  audit: Logger;
  logger: Logger;
  /** The iptables program (tests pass a missing one to see the client fail closed). */
  iptables?: string;
}

export interface GatewayNetwork {
  name: string;
  gatewayIp: string;
  bridgeInterface: string;
}

/**
 * Everything containers need to reach the site's SPARQL endpoint and nothing else, per network
 * mode. In gateway mode: the internal Docker network, the SPARQL gateway on its gateway IP, and
 * host firewall rules confirmed in place (else no container runs, or, if the site's config says
 * so, containers run with no network at all, with a loud audit entry). `close()` removes the
 * gateway, and the network and firewall rules unless containers left running still use them.
 */
export async function prepareContainerNetworking(deps: NetworkingDeps): Promise<PreparedNetworking> {
  const { config, logger, audit } = deps;
  const { network, sparqlEndpoint } = config;
  if (network.mode !== 'gateway') {
    const url = network.sparqlEndpointForContainer ?? sparqlEndpoint;
    const mode = network.mode === 'named' ? network.name! : network.mode;
    if (network.mode === 'bridge')
      logger.warn('containers use the default bridge: they can reach the outside world', {});
    return {
      networkMode: mode,
      sparqlFor: () => ({ url, token: null, release: () => undefined }),
      close: async () => {},
    };
  }

  const net = await ensureGatewayNetwork(deps.engine, config, deps.site);
  const gateway = new SparqlGateway({
    endpoint: sparqlEndpoint,
    allowUpdates: config.gateway.allowUpdates,
    maxResponseBytes: config.gateway.maxResponseBytes,
    queryTimeoutMs: config.gateway.queryTimeoutMs,
    maxConnectionsPerRun: config.gateway.maxConnectionsPerRun,
    maxConnections: config.gateway.maxConnections,
    idleTimeoutMs: config.gateway.idleTimeoutMs,
    allowedGraphs: config.gateway.allowedGraphs,
    audit,
    logger: logger.child({ component: 'sparql-gateway' }),
  });
  const firewall = new HostFirewall(net, logger, deps.iptables);
  const removeNetwork = async (): Promise<void> => {
    await gateway.close();
    if (await deps.engine.removeNetwork(net.name)) {
      await firewall.remove();
      logger.info('gateway network and its firewall rules removed', { network: net.name });
    } else {
      // Containers left running for the next start still sit on it: keep it and its protection.
      logger.info('containers still use the gateway network: it and its firewall rules stay until they end', {
        network: net.name,
      });
    }
  };
  try {
    // The same port across restarts, so containers that outlive a client restart keep their URL.
    const portFile = path.join(config.workDir, 'gateway-port');
    const previous = fs.existsSync(portFile) ? Number(fs.readFileSync(portFile, 'utf8')) : 0;
    try {
      await gateway.listen(net.gatewayIp, previous);
    } catch {
      await gateway.listen(net.gatewayIp, 0);
    }
    fs.writeFileSync(portFile, String(gateway.port));
    const confirmed = (await firewall.apply(gateway.port)) && (await firewall.confirm(gateway.port));
    if (!confirmed) {
      if (network.fallbackToNone) {
        const message =
          'host firewall rules could not be put in place: containers run with NO network at all (network.fallbackToNone)';
        logger.error(message, { network: net.name });
        audit.error(message, { event: 'firewall_fallback_none', network: net.name });
        await removeNetwork();
        return {
          networkMode: 'none',
          sparqlFor: () => ({ url: sparqlEndpoint, token: null, release: () => undefined }),
          close: async () => {},
        };
      }
      const message = 'host firewall rules could not be put in place: this site will run no container until they are';
      logger.error(message, { network: net.name });
      audit.error(message, { event: 'firewall_missing', network: net.name });
    }
  } catch (e) {
    await removeNetwork().catch(() => undefined);
    throw e;
  }
  // Prepared namespaces on the gateway network, one per concurrent run (see network-slots.ts).
  // Without them runs still get the same isolation, joining the network one by one (~200 ms more).
  const slots = await NetworkSlotPool.open({
    engine: deps.engine,
    site: deps.site,
    network: net,
    size: config.concurrency,
    logger: logger.child({ component: 'network-slots' }),
  }).catch((e: unknown) => {
    logger.warn('network slots could not be prepared: each run joins the gateway network itself', {
      error: coerceError(e).message,
    });
    return null;
  });
  logger.info('sparql gateway ready', {
    network: net.name,
    address: `${net.gatewayIp}:${gateway.port}`,
    endpoint: sparqlEndpoint,
  });
  return {
    networkMode: net.name,
    // The engine's embedded resolver forwards names it does not know to these servers, from the
    // container's side of the network: the gateway IP, where the firewall drops everything but the
    // gateway's port. No lookup leaves the host, whatever the host's own resolv.conf says.
    dns: [net.gatewayIp],
    sparqlFor: (runId, token) => {
      const reg = gateway.registerRun(runId, token);
      return {
        url: reg.url,
        token: reg.token,
        release: () => {
          gateway.unregisterRun(reg.token);
          slots?.release(runId);
        },
      };
    },
    ...(slots
      ? {
          placeRun: async (runId: number) => ({
            networkMode: await slots.acquire(runId),
            // Docker refuses name servers for a container that joins another's namespace: the
            // holder's resolv.conf (the gateway IP only) is the run's.
            dns: [],
          }),
        }
      : {}),
    check: async () => {
      if (await firewall.confirm(gateway.port)) return null;
      // Rules removed from outside (or never applied): try once more, then refuse.
      if ((await firewall.apply(gateway.port)) && (await firewall.confirm(gateway.port))) return null;
      audit.error('host firewall rules missing: run refused', { event: 'firewall_missing', network: net.name });
      return "the site's host firewall rules for its gateway network are not in place, so it runs no containers";
    },
    close: async () => {
      // Free slots' holders go; a holder whose run container was left running stays with it.
      await slots
        ?.close()
        .catch((e: unknown) => logger.warn('could not remove network slot holders', { error: coerceError(e).message }));
      await removeNetwork();
    },
  };
}

/**
 * Creates (or reuses) the site's internal Docker network: no route out of its subnet, no traffic
 * between containers. The host side of the bridge holds the gateway IP, where the client serves
 * the SPARQL gateway.
 */
export async function ensureGatewayNetwork(
  engine: ContainerEngine,
  config: ClientConfig,
  site: string,
): Promise<GatewayNetwork> {
  const name = config.network.name ?? `pht-gw-${site}`;
  // Linux interface names are at most 15 characters; a hash keeps them unique per network name.
  const bridgeInterface = `phtgw${crypto.createHash('sha256').update(name).digest('hex').slice(0, 8)}`;
  let info = await engine.inspectNetwork(name);
  if (!info) {
    await engine.createInternalNetwork({
      name,
      bridgeInterface,
      subnet: config.network.subnet,
      labels: { [CONTAINER_LABELS.managedBy]: 'pht-client', [CONTAINER_LABELS.site]: site },
    });
    info = await engine.inspectNetwork(name);
  }
  if (!info) throw new Error(`Docker network ${name} could not be created`);
  if (!info.internal)
    throw new Error(`Docker network ${name} exists but is not internal; remove it or name another one`);
  if (!info.gatewayIp) throw new Error(`Docker network ${name} has no gateway address`);
  return { name, gatewayIp: info.gatewayIp, bridgeInterface: info.bridgeInterface };
}

/**
 * Host firewall rules for the gateway network: a container may open a TCP connection to the
 * gateway port and nothing else on the host (no other service, no DNS). Without them, any host
 * service listening on all addresses would be reachable through the bridge's gateway IP.
 */
export class HostFirewall {
  private readonly comment: string;
  private applied: string[][] = [];

  constructor(
    private readonly network: GatewayNetwork,
    private readonly logger: Logger,
    private readonly iptables = 'iptables',
  ) {
    this.comment = `pht-${network.name}`.slice(0, 250);
  }

  /** Puts the rules in place (replacing stale ones); false when that failed. */
  async apply(port: number): Promise<boolean> {
    await this.removeStale();
    const base = ['INPUT', '-i', this.network.bridgeInterface, '-m', 'comment', '--comment', this.comment];
    const drop = [...base, '-j', 'DROP'];
    const accept = [...base, '-p', 'tcp', '-d', this.network.gatewayIp, '--dport', String(port), '-j', 'ACCEPT'];
    try {
      await run(this.iptables, ['-w', '-I', ...drop]);
      this.applied.push(drop);
      await run(this.iptables, ['-w', '-I', ...accept]);
      this.applied.push(accept);
      this.logger.info('host firewall applied: containers reach only the SPARQL gateway', {
        interface: this.network.bridgeInterface,
        port,
      });
      return true;
    } catch (e) {
      this.logger.error('could not apply host firewall rules', { error: coerceError(e).message });
      await this.remove();
      return false;
    }
  }

  /** True when the kernel holds both rules, the ACCEPT for the gateway port above the DROP. */
  async confirm(port: number): Promise<boolean> {
    let listing: string;
    try {
      listing = (await run(this.iptables, ['-w', '-S', 'INPUT'])).stdout;
    } catch {
      return false;
    }
    const ours = listing
      .split('\n')
      .filter(
        (l) =>
          l.startsWith('-A INPUT ') &&
          l.includes(`-i ${this.network.bridgeInterface} `) &&
          l.includes(`--comment ${this.comment}`),
      );
    const accept = ours.findIndex(
      (l) =>
        l.endsWith('-j ACCEPT') &&
        l.includes(`-d ${this.network.gatewayIp}/32 `) &&
        l.includes('-p tcp ') &&
        l.includes(`--dport ${port} `),
    );
    const drop = ours.findIndex((l) => l.endsWith('-j DROP') && !l.includes(' -p ') && !l.includes(' -d '));
    return accept >= 0 && drop > accept;
  }

  async remove(): Promise<void> {
    for (const rule of this.applied.reverse()) {
      await run(this.iptables, ['-w', '-D', ...rule]).catch(() => undefined);
    }
    this.applied = [];
    await this.removeStale();
  }

  /** Rules left behind by a client that was killed. */
  private async removeStale(): Promise<void> {
    let listing = '';
    try {
      listing = (await run(this.iptables, ['-w', '-S', 'INPUT'])).stdout;
    } catch {
      return;
    }
    for (const line of listing.split('\n')) {
      if (!line.startsWith('-A INPUT') || !line.includes(`--comment ${this.comment}`)) continue;
      const args = line.replace(/^-A /, '').split(/\s+/).filter(Boolean);
      await run(this.iptables, ['-w', '-D', ...args]).catch(() => undefined);
    }
  }
}
