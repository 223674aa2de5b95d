"""slurmlink vk: the virtual kubelet (a Kubernetes node whose pods become SLURM jobs via an interLink API)."""
