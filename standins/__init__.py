"""Stand-ins for what this machine cannot run for real, each behaving like the real one on the points tested:

- `standins.kube`: a kube-apiserver (docs/testing-kubernetes.md says where it differs);
- `standins.checkin`: EGI Check-in (Keycloak's OIDC endpoints);
- `standins/apptainer`: the `apptainer` binary (an executable script, run by the job scripts under test).

They are neither tests nor benchmarks: both use them (tests/ and bench/), so they live beside both, and
import nothing of either.
"""
