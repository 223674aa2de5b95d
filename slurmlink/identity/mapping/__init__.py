"""Map an authorised (issuer, subject) to a local account: an ordered chain of strategies, first match wins.

Each strategy answers one of three ways:
  * a username  - the chain stops, the name goes through the account safety check;
  * None        - "I don't know this person": the next strategy is asked;
  * MappingError - "I cannot answer" (ALISE down, bad apikey, broken map file, pool exhausted): the chain stops
    and the request is refused.
An error is never treated as a miss. Falling through to a weaker strategy (pool, service account) while ALISE is
down would hand a user who linked their site account some other account, with other files and quotas, and do so
silently; refusing tells them to retry. For the same reason a result that fails the safety check (root, the
SlurmUser, a system or unknown account) is an error, not a miss: it means misconfiguration or an attack.

    base.py             MappingRequest, MappingResult, MappingError, Strategy, StrategyOptions
    chain.py            Mapper, the chain
    accounts.py         AccountPolicy, the safety check of every result
    static.py           `static`: a file the site maintains
    alise.py            `alise`: the account linked at ALISE (alise_client.py: ALISE's API)
    pool.py             `pool`: persistent pool accounts
    template.py         `template`: a username built from claims (unsafe where the claim is not unique)
    service_account.py  `service_account`: one account per VO
    steps.py            MappingStep, the `mapping:` configuration's steps
"""

from .accounts import AccountPolicy
from .alise import Alise, AliseOptions
from .alise_client import AliseClient
from .base import USERNAME_RE, MappingError, MappingRequest, MappingResult, Strategy, StrategyOptions
from .chain import Mapper
from .pool import Pool, PoolOptions
from .service_account import ServiceAccount, ServiceAccountOptions
from .static import StaticMap, StaticOptions
from .steps import MappingStep
from .template import UNIQUE_CLAIMS, ClaimTemplate, TemplateOptions

__all__ = ["USERNAME_RE", "UNIQUE_CLAIMS", "AccountPolicy", "Alise", "AliseClient", "AliseOptions", "ClaimTemplate",
           "Mapper", "MappingError", "MappingRequest", "MappingResult", "MappingStep", "Pool", "PoolOptions",
           "ServiceAccount", "ServiceAccountOptions", "StaticMap", "StaticOptions", "Strategy", "StrategyOptions",
           "TemplateOptions"]
