"""The bottom layer: what every other layer of slurmlink shares, importing nothing of slurmlink.

records (jobs, containers, pod directories, capacity), states (SLURM's job states and exit codes), naming
(how a pod and its job find each other), kube (Kubernetes object helpers), quantity (resource quantities),
errors (the one exception root).
"""
