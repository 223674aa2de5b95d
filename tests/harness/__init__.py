"""What the tests share, importable from one place (conftest files only define fixtures):

- `ports`: a free loopback port;
- `waiting`: wait for a condition with a deadline (never a bare sleep);
- `cluster`: which test SLURM a session runs against (state dir, ports, release, REST API version);
- `services`: `slurmlink api|proxy|vk` as processes of their own, and the tests' configurations of them;
- `pods`: the one pod factory (`make_pod`) and an interLink client to a running API;
- `memory_slurm`: an in-memory SchedulerBackend for fast unit tests of the API service and its poller;
- `fake_interlink`: a fake interLink API (pods run at once), for vk tests that need no SLURM;
- `helm`: the vk's Helm chart rendered by the pinned Helm; `kube_calls`: the Kubernetes requests code can make.

The stand-ins of outside services (kube-apiserver, EGI Check-in, apptainer) are in standins/, beside tests/.
"""
