"""Interactive steps of a running pod's job (`kubectl exec`, `attach`, `port-forward`), served over SPDY/3.1:
the sessions (session.py, portforward.py) and the srun argv that starts a step as the pod's account (srun.py).
Shared by the API (mode 2) and the proxy's interactive extension (mode 1), which never import each other."""
