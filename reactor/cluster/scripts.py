"""What a cluster keeps in its engine (Valkey or Redis 7.0): the keys, and the Lua scripts that change them atomically.

Every key starts with the cluster's prefix (``{chat}`` by default: the braces
are a hash tag, so in a Redis Cluster every key lands in one slot):

- ``:nodes``     sorted set: node id -> the end of its lease (engine ms);
- ``:online``    hash: user -> the node it is logged in on (the one login);
  ``:users:NODE`` set: the users logged in on NODE (so a node's end touches its users only);
- ``:last``      hash: user -> when it last logged out (engine ms);
- ``:failures``  hash: user -> wrong passwords in a row; ``:locks``: user -> lockout's end (ms);
- ``:blocks``    set of ``blocker\\nblocked``;
- ``:msg``       hash: message id -> its record (JSON: to, from, text, sent, size, chars, cost, and ref if
  the sender's client gave one);
  ``:mbox:USER`` sorted set of the ids kept for USER, by when they were kept;
  ``:kept``      hash: sender -> the bytes it has kept for others (its quota's count);
  ``:ref:SENDER\nTO\nREF`` string: the id of SENDER's message REF to TO, while it is kept and for
  ``REF_MEMORY`` after it was forgotten (acknowledged): a message with a ref kept already is not kept twice;
- ``:events``    stream every node reads: logins, logouts, blocks, lockouts, broadcasts;
  ``:inbox:NODE`` stream only NODE reads: what other nodes send its users;
- ``:epoch``     counter: each join takes the next, and its node numbers its messages from it.

Each event or inbox entry has one field, ``e``: a JSON object with a ``kind``.
Only commands of the Redis 7.0 set are used. Times are the engine's (``TIME``),
so the nodes' clocks never have to agree.
"""
from __future__ import annotations

from ..server.mail import REF_MEMORY
from .engine import Script

__all__ = ["PREFIX", "IDS_PER_EPOCH", "JOIN", "RENEW", "REAP", "LEAVE", "LOGIN", "LOGOUT", "KEEP", "FORGET",
           "BLOCK", "SNAPSHOT", "EVENTS_KEPT", "INBOX_KEPT"]

PREFIX = "{chat}"
IDS_PER_EPOCH = 1 << 32    # message ids a node may give per join: epoch * IDS_PER_EPOCH + n (exact in a double)
EVENTS_KEPT = 100_000      # about the entries a stream keeps (MAXLEN ~): a node further behind resyncs
INBOX_KEPT = 100_000

_PRELUDE = """
local P = KEYS[1]
local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
local function event(e)
  redis.call('XADD', P .. ':events', 'MAXLEN', '~', $EVENTS_KEPT, '*', 'e', cjson.encode(e))
end
local function last_id(stream)
  local top = redis.call('XREVRANGE', stream, '+', '-', 'COUNT', 1)
  if top[1] then return top[1][1] end
  return '0-0'
end
local function release_all(node, now)
  local users = P .. ':users:' .. node
  local n = 0
  for _, user in ipairs(redis.call('SMEMBERS', users)) do
    if redis.call('HGET', P .. ':online', user) == node then
      redis.call('HDEL', P .. ':online', user)
      redis.call('HSET', P .. ':last', user, now)
      event({kind = 'logout', user = user, node = node, at = now})
      n = n + 1
    end
  end
  redis.call('DEL', users)
  return n
end
""".replace("$EVENTS_KEPT", str(EVENTS_KEPT))


def _script(body: str) -> Script:
    return Script(_PRELUDE + body)


# ARGV: node, lease (ms). Free what an earlier life of this node left (its users' logins, told as logouts),
# take a lease and the next epoch. -> {epoch, the last id of the node's inbox}
JOIN = _script("""
local now = now_ms()
release_all(ARGV[1], now)
redis.call('ZADD', P .. ':nodes', now + tonumber(ARGV[2]), ARGV[1])
return {redis.call('INCR', P .. ':epoch'), last_id(P .. ':inbox:' .. ARGV[1])}
""")

# ARGV: node, lease (ms). -> 1, or 0 if the lease has run out (the node must end its sessions and join again)
RENEW = _script("""
local now = now_ms()
local lease = redis.call('ZSCORE', P .. ':nodes', ARGV[1])
if not lease or tonumber(lease) < now then return 0 end
redis.call('ZADD', P .. ':nodes', now + tonumber(ARGV[2]), ARGV[1])
return 1
""")

# Every node whose lease ran out: forgotten, and each of its users logged out (told to all). -> dead nodes
REAP = _script("""
local now = now_ms()
local dead = redis.call('ZRANGEBYSCORE', P .. ':nodes', '-inf', '(' .. now)
for _, node in ipairs(dead) do
  redis.call('ZREM', P .. ':nodes', node)
  release_all(node, now)
end
return #dead
""")

# ARGV: node. The node stops: its users logged out (told), its lease given up. -> users logged out
LEAVE = _script("""
local n = release_all(ARGV[1], now_ms())
redis.call('ZREM', P .. ':nodes', ARGV[1])
return n
""")

# ARGV: user, ok (1/0), node, lockout (ms), wrong passwords that lock. The lockout, the count, the one login.
# -> {'locked', until} | {'wrong'} | {'blocked', until} | {'already'}
#    | {'welcome', the last id of the node's inbox, kept ids, their records}
LOGIN = _script("""
local user, node, now = ARGV[1], ARGV[3], now_ms()
local lock = redis.call('HGET', P .. ':locks', user)
if lock then
  if tonumber(lock) > now then return {'locked', lock} end
  redis.call('HDEL', P .. ':locks', user)
  redis.call('HDEL', P .. ':failures', user)
end
if ARGV[2] ~= '1' then
  local n = redis.call('HINCRBY', P .. ':failures', user, 1)
  if n < tonumber(ARGV[5]) then return {'wrong'} end
  redis.call('HDEL', P .. ':failures', user)
  local till = tostring(now + tonumber(ARGV[4]))
  redis.call('HSET', P .. ':locks', user, till)
  event({kind = 'locked', user = user, ['until'] = till, node = node})
  return {'blocked', till}
end
local holder = redis.call('HGET', P .. ':online', user)
if holder then
  local lease = redis.call('ZSCORE', P .. ':nodes', holder)
  if lease and tonumber(lease) >= now then return {'already'} end
  redis.call('HSET', P .. ':last', user, now)   -- its node died before it could say so
  redis.call('SREM', P .. ':users:' .. holder, user)
  event({kind = 'logout', user = user, node = holder, at = now})
end
redis.call('HSET', P .. ':online', user, node)
redis.call('SADD', P .. ':users:' .. node, user)
redis.call('HDEL', P .. ':failures', user)
event({kind = 'login', user = user, node = node})
local ids = redis.call('ZRANGE', P .. ':mbox:' .. user, 0, -1)
local records = {}
if #ids > 0 then records = redis.call('HMGET', P .. ':msg', unpack(ids)) end
return {'welcome', last_id(P .. ':inbox:' .. node), ids, records}
""")

# ARGV: user, node. The user left the node (if the login is still that node's). -> 1 or 0
LOGOUT = _script("""
if redis.call('HGET', P .. ':online', ARGV[1]) ~= ARGV[2] then return 0 end
local now = now_ms()
redis.call('HDEL', P .. ':online', ARGV[1])
redis.call('SREM', P .. ':users:' .. ARGV[2], ARGV[1])
redis.call('HSET', P .. ':last', ARGV[1], now)
event({kind = 'logout', user = ARGV[1], node = ARGV[2], at = now})
return 1
""")

# ARGV: id, to, sender, record (JSON), cost, cap, quota (0: none), ref ('': none). Keep a message unless one
# with its ref is kept already ('again': nothing more is done), or the mailbox or the sender's quota is full; if
# its user is logged in somewhere, its node is told. -> 'kept' | 'again' | the refusal's code
KEEP = _script("""
local ref
if ARGV[8] ~= '' then
  ref = P .. ':ref:' .. ARGV[3] .. '\\n' .. ARGV[2] .. '\\n' .. ARGV[8]
  if redis.call('EXISTS', ref) == 1 then return 'again' end
end
local mbox = P .. ':mbox:' .. ARGV[2]
if redis.call('ZCARD', mbox) >= tonumber(ARGV[6]) then return 'queue_full' end
local quota = tonumber(ARGV[7])
local kept = tonumber(redis.call('HGET', P .. ':kept', ARGV[3]) or '0')
if quota > 0 and kept + tonumber(ARGV[5]) > quota then return 'quota_exceeded' end
redis.call('HSET', P .. ':msg', ARGV[1], ARGV[4])
redis.call('ZADD', mbox, now_ms(), ARGV[1])
redis.call('HINCRBY', P .. ':kept', ARGV[3], ARGV[5])
if ref then redis.call('SET', ref, ARGV[1]) end
local holder = redis.call('HGET', P .. ':online', ARGV[2])
if holder then
  redis.call('XADD', P .. ':inbox:' .. holder, 'MAXLEN', '~', $INBOX_KEPT, '*', 'e',
             '{"kind":"stored","id":' .. ARGV[1] .. ',"rec":' .. ARGV[4] .. '}')
end
return 'kept'
""".replace("$INBOX_KEPT", str(INBOX_KEPT)))

# ARGV: ids. Forget these kept messages (acknowledged), giving their bytes back to their senders' quotas; their
# refs are remembered for REF_MEMORY more.
FORGET = _script("""
for _, id in ipairs(ARGV) do
  local record = redis.call('HGET', P .. ':msg', id)
  if record then
    local r = cjson.decode(record)
    redis.call('HDEL', P .. ':msg', id)
    redis.call('ZREM', P .. ':mbox:' .. r.to, id)
    if redis.call('HINCRBY', P .. ':kept', r.from, -r.cost) <= 0 then redis.call('HDEL', P .. ':kept', r.from) end
    if type(r.ref) == 'string' then
      redis.call('PEXPIRE', P .. ':ref:' .. r.from .. '\\n' .. r.to .. '\\n' .. r.ref, $REF_MEMORY)
    end
  end
end
return #ARGV
""".replace("$REF_MEMORY", str(int(REF_MEMORY * 1000))))

# ARGV: blocker, blocked, on (1/0), node. -> 1
BLOCK = _script("""
local pair = ARGV[1] .. '\\n' .. ARGV[2]
if ARGV[3] == '1' then
  redis.call('SADD', P .. ':blocks', pair)
else
  redis.call('SREM', P .. ':blocks', pair)
end
event({kind = 'block', blocker = ARGV[1], blocked = ARGV[2], on = ARGV[3] == '1', node = ARGV[4]})
return 1
""")

# The whole shared view at once. -> {online (flat), last (flat), blocks, locks (flat), last event id, now}
SNAPSHOT = _script("""
return {redis.call('HGETALL', P .. ':online'), redis.call('HGETALL', P .. ':last'),
        redis.call('SMEMBERS', P .. ':blocks'), redis.call('HGETALL', P .. ':locks'),
        last_id(P .. ':events'), now_ms()}
""")
