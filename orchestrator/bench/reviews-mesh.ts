// The config the push and swap benchmarks distribute: a reviews ServiceEntry with v1/v2 endpoints, its
// subsets, and a VirtualService whose v1/v2 weights each round changes (a routing change to push).
import type { ResourceInput } from '../src/store/types.ts';

export const REVIEWS_HOST = 'reviews.default.svc.cluster.local';

export const reviewsSeed: ResourceInput[] = [
  {
    apiVersion: 'networking.istio.io/v1',
    kind: 'ServiceEntry',
    metadata: { name: 'reviews', namespace: 'default' },
    spec: {
      hosts: [REVIEWS_HOST],
      location: 'MESH_INTERNAL',
      resolution: 'STATIC',
      ports: [{ number: 9080, name: 'http', protocol: 'HTTP' }],
      endpoints: [
        { address: '10.0.0.1', ports: { http: 9080 }, labels: { version: 'v1' } },
        { address: '10.0.0.2', ports: { http: 9080 }, labels: { version: 'v2' } },
      ],
    },
  },
  {
    apiVersion: 'networking.istio.io/v1',
    kind: 'DestinationRule',
    metadata: { name: 'reviews', namespace: 'default' },
    spec: { host: REVIEWS_HOST, subsets: [{ name: 'v1', labels: { version: 'v1' } }, { name: 'v2', labels: { version: 'v2' } }] },
  },
];

/** The reviews VirtualService sending `v1` percent to v1 and the rest to v2. */
export function reviewsVirtualService(v1: number): ResourceInput {
  return {
    apiVersion: 'networking.istio.io/v1',
    kind: 'VirtualService',
    metadata: { name: 'reviews', namespace: 'default' },
    spec: {
      hosts: [REVIEWS_HOST],
      http: [{ route: [{ destination: { host: REVIEWS_HOST, subset: 'v1' }, weight: v1 }, { destination: { host: REVIEWS_HOST, subset: 'v2' }, weight: 100 - v1 }] }],
    },
  };
}
