"""The port-forward stream protocol's name, as both of its ends here speak it: the vk as a client (its Services
relay, vk/podforward.py) and the API as the kubelet's side (api/portforward.py)."""

PROTOCOL = "portforward.k8s.io"  # X-Stream-Protocol-Version: the only version a kubelet offers
