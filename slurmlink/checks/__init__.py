"""`slurmlink check-config`: a service's configuration checked before it is started.

Offline: the model (as the service loads it, with `SLURMLINK_*` overrides) and the environment it names (files,
their modes, directories, the job root, SLURM's commands). `--online` adds what needs the network: issuer
discovery, slurmrestd, the API or proxy, the kubeconfig's identity. One module per service, shared file checks
in files.py, the findings and their printing in report.py; run.py puts them together for the command.
"""
