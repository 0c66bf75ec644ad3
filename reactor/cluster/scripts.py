"""What a cluster keeps in its engine (Valkey or Redis 7.0): the keys, and the Lua scripts that change them atomically.

Every key starts with the cluster's prefix (``{chat}`` by default: the braces
are a hash tag, so in a Redis Cluster every key lands in one slot):

- ``:nodes``     sorted set: node id -> the end of its lease (engine ms);
  ``:holders``   hash: node id -> the token of the process that holds its lease (one process per id);
- ``:online``    hash: user -> the node it is logged in on (the one login);
  ``:users:NODE`` set: the users logged in on NODE (so a node's end touches its users only);
- ``:last``      hash: user -> when it last logged out (engine ms);
- ``:failures``  hash: user -> wrong passwords in a row; ``:locks``: user -> lockout's end (ms);
- ``:blocks``    set of ``blocker\\nblocked``;
- ``:msg``       hash: message id -> its record (JSON: to, from, text, sent, size, chars, cost);
  ``:mbox:USER`` sorted set of the ids kept for USER, by when they were kept;
  ``:kept``      hash: sender -> the bytes it has kept for others (its quota's count);
- ``:events``    stream every node reads: logins, logouts, blocks, lockouts, broadcasts;
  ``:inbox:NODE`` stream only NODE reads: what other nodes send its users;
  ``:taken:NODE`` the last entry of NODE's inbox that NODE took: the messages after it are kept for their
  users when NODE's lease runs out (``rescue``), not lost with the node;
- ``:epoch``     counter: each join takes the next, and its node numbers its messages from it;
- ``:incarnation`` a token for the engine's state, made by the first node that finds none: a node that finds
  another one (or none) knows the engine lost its state; ``:settle`` (expires): until then no login is
  decided, so that every node that still serves users has claimed them again (``CLAIM``) or ended them.

Each event or inbox entry has a field ``e``: a JSON object with a ``kind``; a relayed message's inbox entry
has a second, ``r``: the message's record, kept as it is if the node dies before taking it.
Only commands of the Redis 7.0 set are used. Times are the engine's (``TIME``),
so the nodes' clocks never have to agree.
"""
from __future__ import annotations

from .engine import Script

__all__ = ["PREFIX", "IDS_PER_EPOCH", "JOIN", "RENEW", "CLAIM", "REAP", "LEAVE", "LOGIN", "LOGOUT", "KEEP",
           "FORGET", "RELAY", "TOOK", "BLOCK", "LOCK", "SNAPSHOT", "EVENTS_KEPT", "INBOX_KEPT"]

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
local function lease_left(node, now)   -- ms left of node's lease; false if it has none, or it ran out
  local lease = redis.call('ZSCORE', P .. ':nodes', node)
  if lease and tonumber(lease) >= now then return tonumber(lease) - now end
  return false
end
local function incarnation(fresh, lease, now)   -- the engine's; none: it lost its state (or is new), so `fresh`
  local known = redis.call('GET', P .. ':incarnation')
  if known then return known end
  redis.call('SET', P .. ':incarnation', fresh)
  redis.call('SET', P .. ':settle', now + lease, 'PX', lease)
  return fresh
end
local function settle_left(now)
  local till = redis.call('GET', P .. ':settle')
  if till and tonumber(till) > now then return tonumber(till) - now end
  return 0
end
local function keep_for(id, to, from, record, cost, cap, quota)   -- as KEEP
  local mbox = P .. ':mbox:' .. to
  if redis.call('ZCARD', mbox) >= cap then return 'queue_full' end
  local kept = tonumber(redis.call('HGET', P .. ':kept', from) or '0')
  if quota > 0 and kept + cost > quota then return 'quota_exceeded' end
  redis.call('HSET', P .. ':msg', id, record)
  redis.call('ZADD', mbox, now_ms(), id)
  redis.call('HINCRBY', P .. ':kept', from, cost)
  local holder = redis.call('HGET', P .. ':online', to)
  if holder then
    redis.call('XADD', P .. ':inbox:' .. holder, 'MAXLEN', '~', $INBOX_KEPT, '*', 'e',
               '{"kind":"stored","id":' .. id .. ',"rec":' .. record .. '}')
  end
  return 'kept'
end
local function rescue(node, cap, quota)   -- the messages relayed to node that it never took, kept; senders told
  local from = redis.call('GET', P .. ':taken:' .. node)
  if not from then return 0 end
  redis.call('DEL', P .. ':taken:' .. node)
  local told, n = {}, 0
  for _, entry in ipairs(redis.call('XRANGE', P .. ':inbox:' .. node, '(' .. from, '+')) do
    local f = entry[2]
    if f[3] == 'r' then
      local e, r = cjson.decode(f[2]), cjson.decode(f[4])
      local how = keep_for(string.format('%.0f', e.id), r.to, r['from'], f[4], r.cost, cap, quota)
      if how == 'kept' then how = 'stored' end
      if not told[e.node] then told[e.node] = {} end
      table.insert(told[e.node], {to = r.to, ['from'] = r['from'], how = how})
      n = n + 1
    end
  end
  for origin, list in pairs(told) do
    redis.call('XADD', P .. ':inbox:' .. origin, 'MAXLEN', '~', $INBOX_KEPT, '*', 'e',
               cjson.encode({kind = 'taken', list = list}))
  end
  return n
end
local function release_all(node, now, cap, quota)   -- the node's users logged out (told), its untaken kept
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
  rescue(node, cap, quota)
  return n
end
local function reap(node, now, cap, quota)   -- a node whose lease ran out: forgotten, its users logged out
  redis.call('ZREM', P .. ':nodes', node)
  redis.call('HDEL', P .. ':holders', node)
  return release_all(node, now, cap, quota)
end
""".replace("$EVENTS_KEPT", str(EVENTS_KEPT)).replace("$INBOX_KEPT", str(INBOX_KEPT))


def _script(body: str) -> Script:
    return Script(_PRELUDE + body)


# ARGV: node, lease (ms), the process's token, a fresh incarnation (taken if the engine has none), cap, quota.
# Unless a live process holds the id: free what an earlier life of this node left (its users' logins, told as
# logouts; the messages it never took, kept), take a lease and the next epoch.
# -> {'joined', epoch, the last id of the node's inbox, the incarnation, ms it settles} | {'taken', ms left}
JOIN = _script("""
local node, lease, now = ARGV[1], tonumber(ARGV[2]), now_ms()
local inc = incarnation(ARGV[4], lease, now)
local left = lease_left(node, now)
if left and redis.call('HGET', P .. ':holders', node) ~= ARGV[3] then return {'taken', left} end
release_all(node, now, tonumber(ARGV[5]), tonumber(ARGV[6]))
redis.call('ZADD', P .. ':nodes', now + lease, node)
redis.call('HSET', P .. ':holders', node, ARGV[3])
local inbox = last_id(P .. ':inbox:' .. node)
redis.call('SET', P .. ':taken:' .. node, inbox)
return {'joined', redis.call('INCR', P .. ':epoch'), inbox, inc, settle_left(now)}
""")

# ARGV: node, lease (ms), token, incarnation, the last entry of its inbox it took (or ''), kept on disk here.
# -> {'renewed'} | {'expired'} (the lease ran out: the node ends its sessions and joins again) | {'taken', ms
# left} (another process holds the id) | {'lost'} (not this engine state: it lost the one the node joined, which
# claims its sessions again)
RENEW = _script("""
local node, now = ARGV[1], now_ms()
if redis.call('GET', P .. ':incarnation') ~= ARGV[4] then return {'lost'} end
local left = lease_left(node, now)
if redis.call('HGET', P .. ':holders', node) ~= ARGV[3] then
  if left then return {'taken', left} end
  return {'expired'}
end
if not left then return {'expired'} end
redis.call('ZADD', P .. ':nodes', now + tonumber(ARGV[2]), node)
if ARGV[5] ~= '' then redis.call('SET', P .. ':taken:' .. node, ARGV[5]) end
return {'renewed'}
""")

# ARGV: node, lease (ms), token, a fresh incarnation, the node's epoch, then each user the node serves.
# The engine lost its state: unless a live process holds the id, the node takes a lease and each of its users
# again (a login, told), but those another live node has logged in meanwhile.
# -> {'claimed', epoch, inbox's last id, incarnation, ms it settles, {user, its node, ...} taken} | {'taken', ms}
CLAIM = _script("""
local node, lease, now = ARGV[1], tonumber(ARGV[2]), now_ms()
local inc = incarnation(ARGV[4], lease, now)
local left = lease_left(node, now)
if left and redis.call('HGET', P .. ':holders', node) ~= ARGV[3] then return {'taken', left} end
redis.call('ZADD', P .. ':nodes', now + lease, node)
redis.call('HSET', P .. ':holders', node, ARGV[3])
local epoch = redis.call('INCR', P .. ':epoch')
if epoch <= tonumber(ARGV[5]) then   -- (the counter was lost too: no id this node gave may come again)
  epoch = tonumber(ARGV[5]) + 1
  redis.call('SET', P .. ':epoch', epoch)
end
local taken = {}
for i = 6, #ARGV do
  local user = ARGV[i]
  local holder = redis.call('HGET', P .. ':online', user)
  if holder ~= node then
    if holder and lease_left(holder, now) then
      table.insert(taken, user)
      table.insert(taken, holder)
    else
      if holder then redis.call('SREM', P .. ':users:' .. holder, user) end
      redis.call('HSET', P .. ':online', user, node)
      redis.call('SADD', P .. ':users:' .. node, user)
      event({kind = 'login', user = user, node = node})
    end
  end
end
local inbox = last_id(P .. ':inbox:' .. node)
redis.call('SET', P .. ':taken:' .. node, inbox)
return {'claimed', epoch, inbox, inc, settle_left(now), taken}
""")

# ARGV: cap, quota. Every node whose lease ran out: forgotten, each of its users logged out (told to all), the
# messages relayed to it that it never took kept for their users (their senders' nodes told). -> dead nodes
REAP = _script("""
local now = now_ms()
local dead = redis.call('ZRANGEBYSCORE', P .. ':nodes', '-inf', '(' .. now)
for _, node in ipairs(dead) do
  reap(node, now, tonumber(ARGV[1]), tonumber(ARGV[2]))
end
return #dead
""")

# ARGV: node, token, cap, quota. The node stops: its users logged out (told), its untaken messages kept, its
# lease given up (if this process holds it). -> users logged out
LEAVE = _script("""
if redis.call('HGET', P .. ':holders', ARGV[1]) ~= ARGV[2] then return 0 end
return reap(ARGV[1], now_ms(), tonumber(ARGV[3]), tonumber(ARGV[4]))
""")

# ARGV: user, ok (1/0), node, lockout (ms), wrong passwords that lock, token, incarnation, cap, quota. Nothing is
# decided for a node that holds no lease, or knows another engine state, or while the engine settles; then the
# lockout, the count, the one login (a holder whose lease ran out is reaped first).
# -> {'unavailable'} | {'locked', until} | {'wrong'} | {'blocked', until} | {'already'}
#    | {'welcome', the last id of the node's inbox, kept ids, their records}
LOGIN = _script("""
local user, node, now = ARGV[1], ARGV[3], now_ms()
if redis.call('GET', P .. ':incarnation') ~= ARGV[7] or redis.call('HGET', P .. ':holders', node) ~= ARGV[6]
    or not lease_left(node, now) or settle_left(now) > 0 then
  return {'unavailable'}
end
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
  if lease_left(holder, now) then return {'already'} end
  reap(holder, now, tonumber(ARGV[8]), tonumber(ARGV[9]))   -- its node died, and was not reaped yet
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

# ARGV: user, node, token. The user left the node (if the login is still that node's, held by this process). -> 1/0
LOGOUT = _script("""
if redis.call('HGET', P .. ':online', ARGV[1]) ~= ARGV[2] then return 0 end
if redis.call('HGET', P .. ':holders', ARGV[2]) ~= ARGV[3] then return 0 end
local now = now_ms()
redis.call('HDEL', P .. ':online', ARGV[1])
redis.call('SREM', P .. ':users:' .. ARGV[2], ARGV[1])
redis.call('HSET', P .. ':last', ARGV[1], now)
event({kind = 'logout', user = ARGV[1], node = ARGV[2], at = now})
return 1
""")

# ARGV: id, to, sender, record (JSON), cost, cap, quota (0: none). Keep a message unless the mailbox or the
# sender's quota is full; if its user is logged in somewhere, its node is told. -> 'kept' | the refusal's code
KEEP = _script("""
local mbox = P .. ':mbox:' .. ARGV[2]
if redis.call('ZCARD', mbox) >= tonumber(ARGV[6]) then return 'queue_full' end
local quota = tonumber(ARGV[7])
local kept = tonumber(redis.call('HGET', P .. ':kept', ARGV[3]) or '0')
if quota > 0 and kept + tonumber(ARGV[5]) > quota then return 'quota_exceeded' end
redis.call('HSET', P .. ':msg', ARGV[1], ARGV[4])
redis.call('ZADD', mbox, now_ms(), ARGV[1])
redis.call('HINCRBY', P .. ':kept', ARGV[3], ARGV[5])
local holder = redis.call('HGET', P .. ':online', ARGV[2])
if holder then
  redis.call('XADD', P .. ':inbox:' .. holder, 'MAXLEN', '~', $INBOX_KEPT, '*', 'e',
             '{"kind":"stored","id":' .. ARGV[1] .. ',"rec":' .. ARGV[4] .. '}')
end
return 'kept'
""".replace("$INBOX_KEPT", str(INBOX_KEPT)))

# ARGV: ids. Forget these kept messages (acknowledged), giving their bytes back to their senders' quotas.
FORGET = _script("""
for _, id in ipairs(ARGV) do
  local record = redis.call('HGET', P .. ':msg', id)
  if record then
    local r = cjson.decode(record)
    redis.call('HDEL', P .. ':msg', id)
    redis.call('ZREM', P .. ':mbox:' .. r.to, id)
    if redis.call('HINCRBY', P .. ':kept', r.from, -r.cost) <= 0 then redis.call('HDEL', P .. ':kept', r.from) end
  end
end
return #ARGV
""")

# ARGV: id, to, sender, record (JSON, as KEEP's), cost, cap, quota, the sender's node, a node to pass by. A message
# for a user logged in on another node: to that node's inbox if its lease is live (and it is not the one to pass
# by: it has not the user), else kept as KEEP keeps it (after what that node never took, if it is dead: reaped
# first, so the user gets its messages in the order they were sent). -> 'relayed' | 'kept' | the refusal's code
RELAY = _script("""
local holder, now = redis.call('HGET', P .. ':online', ARGV[2]), now_ms()
if holder and holder ~= ARGV[9] then
  if lease_left(holder, now) then
    redis.call('XADD', P .. ':inbox:' .. holder, 'MAXLEN', '~', $INBOX_KEPT, '*',
               'e', '{"kind":"message","id":' .. ARGV[1] .. ',"node":"' .. ARGV[8] .. '"}', 'r', ARGV[4])
    return 'relayed'
  end
  reap(holder, now, tonumber(ARGV[6]), tonumber(ARGV[7]))
end
return keep_for(ARGV[1], ARGV[2], ARGV[3], ARGV[4], tonumber(ARGV[5]), tonumber(ARGV[6]), tonumber(ARGV[7]))
""".replace("$INBOX_KEPT", str(INBOX_KEPT)))

# ARGV: node, token, the last entry of its inbox it took (or ''), then (node, entry) pairs: the fates of those
# nodes' users' messages. If this process holds the id: the position, and an entry to each node's inbox. Neither
# is written to the engine's disk, so a message costs the engine one write to disk (RELAY's), as before there
# were fates: a fate lost with the engine leaves a sender unconfirmed, and the position on disk is RENEW's.
TOOK = _script("""
redis.set_repl(redis.REPL_NONE)
if redis.call('HGET', P .. ':holders', ARGV[1]) ~= ARGV[2] then return 0 end
if ARGV[3] ~= '' then redis.call('SET', P .. ':taken:' .. ARGV[1], ARGV[3]) end
for i = 4, #ARGV, 2 do
  redis.call('XADD', P .. ':inbox:' .. ARGV[i], 'MAXLEN', '~', $INBOX_KEPT, '*', 'e', ARGV[i + 1])
end
return 1
""".replace("$INBOX_KEPT", str(INBOX_KEPT)))

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

# ARGV: user, ms (0: lift the lock), node. The operator's lockout of a user for every node, or its lifting
# (which forgets the wrong passwords in a row too), told to all as a lockout ending then. -> its end (ms)
LOCK = _script("""
local user, ms = ARGV[1], tonumber(ARGV[2])
local till = tostring(now_ms() + ms)
redis.call('HDEL', P .. ':failures', user)
if ms > 0 then
  redis.call('HSET', P .. ':locks', user, till)
else
  redis.call('HDEL', P .. ':locks', user)
end
event({kind = 'locked', user = user, ['until'] = till, node = ARGV[3]})
return till
""")

# The whole shared view at once. -> {online (flat), last (flat), blocks, locks (flat), last event id, now}
SNAPSHOT = _script("""
return {redis.call('HGETALL', P .. ':online'), redis.call('HGETALL', P .. ':last'),
        redis.call('SMEMBERS', P .. ':blocks'), redis.call('HGETALL', P .. ':locks'),
        last_id(P .. ':events'), now_ms()}
""")
