"""Redis storage: the only package that imports redis. Key names live in `keys`, Lua in
`scripts`; replies (bytes or str under RESP3) are narrowed here before anyone else sees them.
`Store` (in `store.store`) is what the rest of Kaeru holds; these are the names it uses."""

from redis.exceptions import RedisError as RedisError

from adserver.store.base import Conversion as Conversion
from adserver.store.base import Placement as Placement
from adserver.store.base import StoreLimits as StoreLimits
from adserver.store.base import day_of as day_of
from adserver.store.identity_links import Linked as Linked
from adserver.store.store import Store as Store
from adserver.store.store import connect as connect
