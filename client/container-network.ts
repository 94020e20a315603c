import crypto from 'node:crypto';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import type Docker from 'dockerode';
import { CONTAINER_LABELS } from '../shared/container-contract.js';
import { coerceError } from '../shared/errors.js';
import type { Logger } from '../shared/logger.js';
import type { ClientConfig } from './config.js';

const run = promisify(execFile);

export interface GatewayNetwork {
  name: string;
  gatewayIp: string;
  bridgeInterface: string;
}

/**
 * Creates (or reuses) the site's internal Docker network: no route out of its subnet, no traffic
 * between containers. The host side of the bridge holds the gateway IP, where the client serves
 * the SPARQL gateway.
 */
export async function ensureGatewayNetwork(
  docker: Docker,
  config: ClientConfig,
  site: string,
): Promise<GatewayNetwork> {
  const name = config.network.name ?? `pht-gw-${site}`;
  // Linux interface names are at most 15 characters; a hash keeps them unique per network name.
  const bridgeInterface = `phtgw${crypto.createHash('sha256').update(name).digest('hex').slice(0, 8)}`;
  let network = (await docker.listNetworks({ filters: { name: [name] } })).find((n) => n.Name === name);
  if (!network) {
    try {
      await docker.createNetwork({
        Name: name,
        Driver: 'bridge',
        Internal: true,
        CheckDuplicate: true,
        Labels: { [CONTAINER_LABELS.managedBy]: 'pht-client', [CONTAINER_LABELS.site]: site },
        Options: {
          'com.docker.network.bridge.name': bridgeInterface,
          'com.docker.network.bridge.enable_icc': 'false',
          'com.docker.network.bridge.enable_ip_masquerade': 'false',
        },
        ...(config.network.subnet ? { IPAM: { Driver: 'default', Config: [{ Subnet: config.network.subnet }] } } : {}),
      });
    } catch (e) {
      if ((e as { statusCode?: number }).statusCode !== 409) throw e;
    }
    network = (await docker.listNetworks({ filters: { name: [name] } })).find((n) => n.Name === name);
  }
  if (!network) throw new Error(`Docker network ${name} could not be created`);
  const info = await docker.getNetwork(network.Id).inspect();
  if (!info.Internal)
    throw new Error(`Docker network ${name} exists but is not internal; remove it or name another one`);
  const gatewayIp = info.IPAM?.Config?.[0]?.Gateway as string | undefined;
  if (!gatewayIp) throw new Error(`Docker network ${name} has no gateway address`);
  const iface =
    (info.Options?.['com.docker.network.bridge.name'] as string | undefined) ?? `br-${String(info.Id).slice(0, 12)}`;
  return { name, gatewayIp: gatewayIp.split('/')[0]!, bridgeInterface: iface };
}

/**
 * Host firewall rules for the gateway network: a container may open a TCP connection to the
 * gateway port and nothing else on the host. Without them, any host service listening on all
 * addresses would be reachable through the bridge's gateway IP.
 */
export class HostFirewall {
  private readonly comment: string;
  private applied: string[][] = [];

  constructor(
    private readonly network: GatewayNetwork,
    private readonly logger: Logger,
  ) {
    this.comment = `pht-${network.name}`.slice(0, 250);
  }

  async apply(port: number): Promise<boolean> {
    await this.removeStale();
    const base = ['INPUT', '-i', this.network.bridgeInterface, '-m', 'comment', '--comment', this.comment];
    const drop = [...base, '-j', 'DROP'];
    const accept = [...base, '-p', 'tcp', '-d', this.network.gatewayIp, '--dport', String(port), '-j', 'ACCEPT'];
    try {
      await run('iptables', ['-w', '-I', ...drop]);
      this.applied.push(drop);
      await run('iptables', ['-w', '-I', ...accept]);
      this.applied.push(accept);
      this.logger.info('host firewall applied: containers reach only the SPARQL gateway', {
        interface: this.network.bridgeInterface,
        port,
      });
      return true;
    } catch (e) {
      this.logger.warn(
        'could not apply host firewall rules; containers may reach host services through the gateway IP',
        {
          error: coerceError(e).message,
        },
      );
      await this.remove();
      return false;
    }
  }

  async remove(): Promise<void> {
    for (const rule of this.applied.reverse()) {
      await run('iptables', ['-w', '-D', ...rule]).catch(() => undefined);
    }
    this.applied = [];
  }

  /** Rules left behind by a client that was killed. */
  private async removeStale(): Promise<void> {
    let listing = '';
    try {
      listing = (await run('iptables', ['-w', '-S', 'INPUT'])).stdout;
    } catch {
      return;
    }
    for (const line of listing.split('\n')) {
      if (!line.startsWith('-A INPUT') || !line.includes(`--comment ${this.comment}`)) continue;
      const args = line.replace(/^-A /, '').split(/\s+/).filter(Boolean);
      await run('iptables', ['-w', '-D', ...args]).catch(() => undefined);
    }
  }
}
