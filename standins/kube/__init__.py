"""A stand-in for kube-apiserver, for tests. It is NOT a Kubernetes apiserver; it imitates one.

No real kube-apiserver can run on our CI machines, so this one is served for real (HTTPS with a CA generated at
start, or plain HTTP for debugging) by uvicorn on a free loopback port, with an in-memory store, and was made to
behave like the real apiserver (v1.36) on what a kubelet and kubectl use, per `shared/reference/kubernetes.md`:

- discovery: /version, /api, /api/v1, /apis, /apis/<group>[/v1], aggregated discovery (apidiscovery.k8s.io/v2),
  a minimal OpenAPI v3 (so `kubectl apply` validates server-side); /openapi/v2 is 404, as optional.
- types: namespaces, nodes (+status), pods (+status, +log, +binding), bindings, configmaps, secrets,
  serviceaccounts (+token, TokenRequest), events (core/v1 and events.k8s.io/v1, one storage), leases
  (coordination.k8s.io/v1), certificatesigningrequests (+approval, +status), services (+status; a ClusterIP that
  nothing answers on: there is no kube-proxy), endpointslices (discovery.k8s.io/v1).
- one global resourceVersion; create sets uid, creationTimestamp, generateName suffixes; defaulting as the real
  one (pods: Pending status, restartPolicy, terminationGracePeriodSeconds 30, dnsPolicy, schedulerName, default
  tolerations, QoS, the ServiceAccount admission and its kube-api-access volume).
- list with label selectors (equality and set-based), field selectors per type (unknown labels refused), limit and
  continue; watch from a resourceVersion, 410 Expired when too old, bookmarks, timeoutSeconds, sendInitialEvents.
- PUT with a stale resourceVersion → 409; status subresources separate from the main resource; JSON patch, merge
  patch, strategic merge patch (merge keys of the lists kubelets touch; container status lists replaced whole);
  Time in whole seconds, MicroTime checked; generateName checked as a name prefix (not for core/v1 Events).
- graceful pod deletion (deletionTimestamp + deletionGracePeriodSeconds, removed on a grace-0 delete, uid
  preconditions), unbound or finished pods deleted at once, finalizers honoured.
- pods/log proxied to the node's kubelet endpoint over HTTPS with a kubelet-client certificate (204 for a pod not
  on a node yet; kubelet errors in the apiserver's words).
- auth: bearer tokens (a static admin token, ServiceAccount tokens for the apiserver's audience) and client
  certificates of its CA.
- TokenReview and SubjectAccessReview (a kubelet's webhook authn/authz), answered from a minimal RBAC-like grant
  table (rbac.py) seeded as a kubeadm cluster: admins, the apiserver's kubelet client, nodes may send reviews.
- SelfSubjectReview (`kubectl auth whoami`): any authenticated caller learns its user name and groups.
- pods/exec and pods/attach: kubectl's WebSocket (v5/v4.channel.k8s.io) translated to SPDY/3.1 streams to the
  node's kubelet, and kubectl's SPDY relayed to it untouched (streams.py).
- pods/portforward (Running pods only): kubectl's SPDY tunnelled in a WebSocket (`SPDY/3.1+portforward.k8s.io`)
  unwrapped and relayed to the kubelet's `/portForward` as plain SPDY/3.1, or its plain SPDY relayed untouched.

It deliberately does not do: authorization of ordinary requests (the grant table answers reviews only: no RBAC
on other verbs, no Node authorizer, no NodeRestriction), roles and bindings as objects, admission webhooks,
managedFields and true server-side apply (apply-patch is approximated by strategic merge), protobuf, quantity
normalisation, reading past resourceVersions (lists always answer the current state),
controllers (but for a small scheduler, the namespace cleanup, the default ServiceAccount/kube-root-ca.crt,
the two garbage collectors a kubelet meets after `kubectl delete node`: owner references and orphaned pods, gc.py,
and the EndpointSlice controller for Services with a selector, endpointslices.py), kube-proxy, cluster DNS.

An audit log (`kube.audit`, audit.py) keeps the RBAC attributes of every authenticated request, by user.

Fault injection for tests: `drop_watches()`, `expire_next_watches(n)`, `compact()`, `latency`,
`faults.refuse_node_reads(n)` (the Node authorizer's lag after a binding).
Use: `with KubeStandin() as kube: ...` then point clients at `kube.kubeconfig`; or `python -m standins.kube`.
"""

from .server import KubeStandin

__all__ = ["KubeStandin"]
