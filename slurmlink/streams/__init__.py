"""Interactive streams between kubectl and a SLURM job: SPDY/3.1 sessions (what a kubelet speaks to the
apiserver), the Kubernetes remote-command channel protocol, and taking an upgraded HTTP/1.1 connection over
from uvicorn. Shared by the vk, the API and the apiserver stand-in; exec/attach use it now, port-forward
(SPDY streams with `portforward.k8s.io`) is meant to reuse the same session."""
