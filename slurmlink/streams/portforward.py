"""The port-forward stream protocol's name, as every end here speaks it: the vk as a client (its Services relay,
vk/podforward.py), and the API and the proxy as the kubelet's side (steps/portforward.py)."""

PROTOCOL = "portforward.k8s.io"  # X-Stream-Protocol-Version: the only version a kubelet offers
