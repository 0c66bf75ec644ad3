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
- ``:msg``       hash: message id -> its record (JSON: to, from, text, sent, size, chars, cost, and ref if
  the sender's client gave one);
  ``:mbox:USER`` sorted set of the ids kept for USER, by when they were kept;
  ``:kept``      hash: sender -> the bytes it has kept for others (its quota's count);
  ``:ref:SENDER\\nTO\\nREF`` string: the id of SENDER's message REF to TO, while it is kept and for
  ``REF_MEMORY`` after it was forgotten (acknowledged), or for ``RELAYED_REF_MEMORY`` after it was relayed
  to a live node: a sending of a message whose ref is known is dropped (``again``), not kept or relayed twice;
- ``:events``    stream every node reads: logins, logouts, blocks, lockouts, broadcasts;
  ``:inbox:NODE`` stream only NODE reads: what other nodes send its users;
  ``:taken:NODE`` the last entry of NODE's inbox that NODE took: the messages after it are kept for their
  users when NODE's lease runs out (``rescue``), not lost with the node;
- ``:away``      hash: user -> its away words (while it is away and logged in);
- ``:h:cfg``     hash: ``keep`` (ms the history is kept; 0: none) and ``cap`` (messages of its own a user's
  history keeps), as the nodes were started with; ``:h:next`` counter: the last history id;
  ``:h:m``       hash: history id -> its record (JSON: f from, t to or '' for a broadcast, x text, s sent,
  k when kept (ms), h: who did not get a broadcast, blocking its sender, as ``\nA\nB\n``);
  ``:h:all``     sorted set of history ids by when kept (trimmed by age, ``TRIMH``); ``:h:w:USER`` the ids USER
  wrote (its cap); ``:h:p:A\nB`` the ids between A and B (A < B); ``:h:b`` the broadcasts' ids;
  ``:h:f``       hash: ``owner\npeer`` (peer '' for the broadcasts) -> the id up to which owner forgot;
  ``:h:on``      hash: user -> when its session began (ms); ``:h:s:USER`` sorted set of its sessions that
  ended, ``start:end`` by end (the broadcasts a user got are those kept during its sessions);
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

from ..server.mail import REF_MEMORY
from .engine import Script

__all__ = ["PREFIX", "IDS_PER_EPOCH", "JOIN", "RENEW", "CLAIM", "REAP", "LEAVE", "LOGIN", "LOGOUT", "KEEP",
           "FORGET", "RELAY", "TOOK", "BLOCK", "LOCK", "SNAPSHOT", "EVENTS_KEPT", "INBOX_KEPT", "RELAYED_REF_MEMORY",
           "REMEMBER", "READH", "FORGETH", "TRIMH", "AWAY", "HISTORY_TRIM_BATCH", "HISTORY_SCAN"]

PREFIX = "{chat}"
IDS_PER_EPOCH = 1 << 32    # message ids a node may give per join: epoch * IDS_PER_EPOCH + n (exact in a double)
EVENTS_KEPT = 100_000      # about the entries a stream keeps (MAXLEN ~): a node further behind resyncs
INBOX_KEPT = 100_000
# Seconds the ref of a message relayed to a live node is remembered: its sender's client sends it again only
# while it was not confirmed (about 31 s from the first "not confirmed", and a node tells that within its
# engine's reply timeout), so twice that is ample; REF_MEMORY's 10 minutes for each cross-node message would
# hold about 100 bytes of engine memory per message for that long (120 MB at 2,000 relayed messages a second).
RELAYED_REF_MEMORY = 120.0
HISTORY_TRIM_BATCH = 500   # history records one TRIMH drops at most
HISTORY_SCAN = 20_000      # broadcasts one READH looks at, at most, for those a user got

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
local function pair(a, b)
  if a < b then return a .. '\\n' .. b end
  return b .. '\\n' .. a
end
local function hist_drop(id)   -- a history record gone, from every set it is in
  local rec = redis.call('HGET', P .. ':h:m', id)
  if not rec then return end
  local r = cjson.decode(rec)
  redis.call('HDEL', P .. ':h:m', id)
  redis.call('ZREM', P .. ':h:all', id)
  redis.call('ZREM', P .. ':h:w:' .. r.f, id)
  if r.t == '' then
    redis.call('ZREM', P .. ':h:b', id)
  else
    redis.call('ZREM', P .. ':h:p:' .. pair(r.f, r.t), id)
  end
end
local function hist(from, to, text, sent, hidden)   -- history: a message ('' to: a broadcast), if it is kept
  local cfg = redis.call('HMGET', P .. ':h:cfg', 'keep', 'cap')
  local cap = tonumber(cfg[2] or '0')
  if tonumber(cfg[1] or '0') <= 0 or cap <= 0 then return end
  local id, now = redis.call('INCR', P .. ':h:next'), now_ms()
  if type(sent) ~= 'number' then sent = nil end
  local r = {f = from, t = to, x = text, s = sent, k = now}
  if hidden and hidden ~= '' then r.h = hidden end
  redis.call('HSET', P .. ':h:m', id, cjson.encode(r))
  redis.call('ZADD', P .. ':h:all', now, id)
  local mine = P .. ':h:w:' .. from
  redis.call('ZADD', mine, id, id)
  if to == '' then
    redis.call('ZADD', P .. ':h:b', id, id)
  else
    redis.call('ZADD', P .. ':h:p:' .. pair(from, to), id, id)
  end
  local over = redis.call('ZCARD', mine) - cap
  if over > 0 then
    for _, old in ipairs(redis.call('ZRANGE', mine, 0, over - 1)) do hist_drop(old) end
  end
end
local function hist_kept(record)   -- history: a message kept for later (its record as KEEP's)
  local r = cjson.decode(record)
  hist(r['from'], r.to, r.text, r.sent, '')
end
local function session_end(user, now)   -- history: the user's session ended (and its away)
  redis.call('HDEL', P .. ':away', user)
  local start = redis.call('HGET', P .. ':h:on', user)
  if not start then return end
  redis.call('HDEL', P .. ':h:on', user)
  local sessions = P .. ':h:s:' .. user
  redis.call('ZADD', sessions, now, start .. ':' .. now)
  local keep = tonumber(redis.call('HGET', P .. ':h:cfg', 'keep') or '0')
  redis.call('ZREMRANGEBYSCORE', sessions, '-inf', '(' .. (now - keep))
end
local function ref_key(from, to, ref)   -- where a message's ref ('': none) is remembered; false: nowhere
  if ref == '' then return false end
  return P .. ':ref:' .. from .. '\\n' .. to .. '\\n' .. ref
end
local function seen(rkey)   -- whether a message with this ref was kept or relayed, and is remembered
  return rkey and redis.call('EXISTS', rkey) == 1
end
-- KEEP's and RELAY's one way to keep a message, with its ref (remembered while it is kept) and its history:
-- unless `fresh` (a sending by its sender's node, not a message on its way) and its ref is known ('again':
-- nothing is written, its history neither), or the mailbox or the sender's quota is full; if its user is
-- logged in somewhere, its node is told.
local function keep_for(id, to, from, record, cost, cap, quota, ref, fresh)
  local rkey = ref_key(from, to, ref)
  if fresh and seen(rkey) then return 'again' end
  local mbox = P .. ':mbox:' .. to
  if redis.call('ZCARD', mbox) >= cap then return 'queue_full' end
  local kept = tonumber(redis.call('HGET', P .. ':kept', from) or '0')
  if quota > 0 and kept + cost > quota then return 'quota_exceeded' end
  redis.call('HSET', P .. ':msg', id, record)
  redis.call('ZADD', mbox, now_ms(), id)
  redis.call('HINCRBY', P .. ':kept', from, cost)
  if rkey then redis.call('SET', rkey, id) end   -- (no expiry while kept: FORGET gives it REF_MEMORY)
  hist_kept(record)   -- (its history once: a repeat of its ref was 'again' above, and wrote none)
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
      local ref = type(r.ref) == 'string' and r.ref or ''
      local how = keep_for(string.format('%.0f', e.id), r.to, r['from'], f[4], r.cost, cap, quota, ref, false)
      if how == 'kept' then how = 'stored' end
      if not told[e.node] then told[e.node] = {} end
      table.insert(told[e.node], {to = r.to, ['from'] = r['from'], how = how, ref = r.ref})
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
      session_end(user, now)
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


# ARGV: node, lease (ms), the process's token, a fresh incarnation (taken if the engine has none), cap, quota,
# the history's keep (ms; 0: none) and cap. Unless a live process holds the id: free what an earlier life of this
# node left (its users' logins, told as logouts; the messages it never took, kept), take a lease and the next epoch.
# -> {'joined', epoch, the last id of the node's inbox, the incarnation, ms it settles} | {'taken', ms left}
JOIN = _script("""
local node, lease, now = ARGV[1], tonumber(ARGV[2]), now_ms()
local inc = incarnation(ARGV[4], lease, now)
local left = lease_left(node, now)
if left and redis.call('HGET', P .. ':holders', node) ~= ARGV[3] then return {'taken', left} end
if ARGV[7] then redis.call('HSET', P .. ':h:cfg', 'keep', ARGV[7], 'cap', ARGV[8]) end
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
      redis.call('HSETNX', P .. ':h:on', user, now)
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
session_end(user, now)   -- (one a crash left open)
redis.call('HSET', P .. ':h:on', user, now)
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
session_end(ARGV[1], now)
event({kind = 'logout', user = ARGV[1], node = ARGV[2], at = now})
return 1
""")

# ARGV: id, to, sender, record (JSON), cost, cap, quota (0: none), ref ('': none), fresh (1: a sending by the
# sender's node; 0: a message relayed to this node on its way, whose ref the engine knows as its own). Keep a
# message (``keep_for``), and its history, unless it is fresh and its ref is known ('again': nothing more is
# done), or the mailbox or the sender's quota is full; if its user is logged in somewhere, its node is told.
# -> 'kept' | 'again' | the refusal's code
KEEP = _script("""
return keep_for(ARGV[1], ARGV[2], ARGV[3], ARGV[4], tonumber(ARGV[5]), tonumber(ARGV[6]), tonumber(ARGV[7]),
                ARGV[8], ARGV[9] == '1')
""")

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
    if type(r.ref) == 'string' and r.ref ~= '' then
      redis.call('PEXPIRE', ref_key(r.from, r.to, r.ref), $REF_MEMORY)
    end
  end
end
return #ARGV
""".replace("$REF_MEMORY", str(int(REF_MEMORY * 1000))))

# ARGV: id, to, sender, record (JSON, as KEEP's), cost, cap, quota, the sender's node, a node to pass by, ref ('':
# none), fresh (1/0, as KEEP's). A message for a user logged in on another node: dropped if it is fresh and its
# ref is known ('again': taken before); else to that node's inbox if its lease is live (and it is not the one to
# pass by: it has not the user), its ref remembered for RELAYED_REF_MEMORY; else kept as KEEP keeps it (after
# what that node never took, if it is dead: reaped first, so the user gets its messages in the order they were
# sent). -> 'relayed' | 'kept' | 'again' | the refusal's code
RELAY = _script("""
local rkey = ref_key(ARGV[3], ARGV[2], ARGV[10])
if ARGV[11] == '1' and seen(rkey) then return 'again' end
local holder, now = redis.call('HGET', P .. ':online', ARGV[2]), now_ms()
if holder and holder ~= ARGV[9] then
  if lease_left(holder, now) then
    redis.call('XADD', P .. ':inbox:' .. holder, 'MAXLEN', '~', $INBOX_KEPT, '*',
               'e', '{"kind":"message","id":' .. ARGV[1] .. ',"node":"' .. ARGV[8] .. '"}', 'r', ARGV[4])
    if rkey then redis.call('SET', rkey, ARGV[1], 'PX', $RELAYED_REF_MEMORY) end
    return 'relayed'
  end
  reap(holder, now, tonumber(ARGV[6]), tonumber(ARGV[7]))
end
return keep_for(ARGV[1], ARGV[2], ARGV[3], ARGV[4], tonumber(ARGV[5]), tonumber(ARGV[6]), tonumber(ARGV[7]),
                ARGV[10], false)   -- (looked up above)
""".replace("$INBOX_KEPT", str(INBOX_KEPT)).replace("$RELAYED_REF_MEMORY", str(int(RELAYED_REF_MEMORY * 1000))))

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

# The whole shared view at once. -> {online (flat), last (flat), blocks, locks (flat), last event id, now,
# away (flat)}
SNAPSHOT = _script("""
return {redis.call('HGETALL', P .. ':online'), redis.call('HGETALL', P .. ':last'),
        redis.call('SMEMBERS', P .. ':blocks'), redis.call('HGETALL', P .. ':locks'),
        last_id(P .. ':events'), now_ms(), redis.call('HGETALL', P .. ':away')}
""")

# ARGV: user, on (1/0), text, node. The user is away with these words (on), or back; told to all. -> 1
AWAY = _script("""
if ARGV[2] == '1' then
  redis.call('HSET', P .. ':away', ARGV[1], ARGV[3])
  event({kind = 'away', user = ARGV[1], text = ARGV[3], node = ARGV[4]})
else
  redis.call('HDEL', P .. ':away', ARGV[1])
  event({kind = 'away', user = ARGV[1], node = ARGV[4]})
end
return 1
""")

# ARGV: five per message: from, to ('': a broadcast), text, sent (''), who did not get it (a broadcast: ''
# or \nA\nB\n). History: the turn's messages relayed live and broadcasts (a message kept for later is written
# by KEEP). -> how many
REMEMBER = _script("""
for i = 1, #ARGV, 5 do
  hist(ARGV[i], ARGV[i + 1], ARGV[i + 2], tonumber(ARGV[i + 3]), ARGV[i + 4])
end
return #ARGV / 5
""")

# ARGV: owner, peer ('': the broadcasts it sent or got), count. The last `count` records of owner's history with
# peer, newest first, past where owner forgot; the broadcasts got are those kept while owner was logged in and
# not hidden from it (at most $SCAN looked at). -> records (JSON)
READH = _script("""
local owner, peer, n = ARGV[1], ARGV[2], tonumber(ARGV[3])
local upto = redis.call('HGET', P .. ':h:f', owner .. '\\n' .. peer) or '0'
if peer ~= '' then
  local ids = redis.call('ZREVRANGEBYSCORE', P .. ':h:p:' .. pair(owner, peer), '+inf', '(' .. upto, 'LIMIT', 0, n)
  if #ids == 0 then return {} end
  return redis.call('HMGET', P .. ':h:m', unpack(ids))
end
local spans = {}
for _, span in ipairs(redis.call('ZRANGE', P .. ':h:s:' .. owner, 0, -1)) do
  local a, b = string.match(span, '^(%d+):(%d+)$')
  if a then table.insert(spans, {tonumber(a), tonumber(b)}) end
end
local open = redis.call('HGET', P .. ':h:on', owner)
if open then table.insert(spans, {tonumber(open), math.huge}) end
local tag = '\\n' .. owner .. '\\n'
local out, from, scanned = {}, '+inf', 0
while #out < n and scanned < $SCAN do
  local ids = redis.call('ZREVRANGEBYSCORE', P .. ':h:b', from, '(' .. upto, 'LIMIT', 0, 200)
  if #ids == 0 then break end
  local records = redis.call('HMGET', P .. ':h:m', unpack(ids))
  for i = 1, #ids do
    scanned = scanned + 1
    local rec = records[i]
    if rec then
      local r = cjson.decode(rec)
      local got = r.f == owner
      if not got and not (r.h and string.find(r.h, tag, 1, true)) then
        for _, span in ipairs(spans) do
          if r.k >= span[1] and r.k <= span[2] then got = true break end
        end
      end
      if got then
        table.insert(out, rec)
        if #out >= n then break end
      end
    end
  end
  from = '(' .. ids[#ids]
end
return out
""".replace("$SCAN", str(HISTORY_SCAN)))

# ARGV: owner, peer ('': its broadcasts). Owner's copy ends at the last history kept so far; what both sides of a
# conversation forgot is dropped. -> 1
FORGETH = _script("""
local owner, peer = ARGV[1], ARGV[2]
local upto = tonumber(redis.call('GET', P .. ':h:next') or '0')
redis.call('HSET', P .. ':h:f', owner .. '\\n' .. peer, upto)
if peer ~= '' then
  local other = redis.call('HGET', P .. ':h:f', peer .. '\\n' .. owner)
  if other then
    local both = math.min(upto, tonumber(other))
    for _, id in ipairs(redis.call('ZRANGEBYSCORE', P .. ':h:p:' .. pair(owner, peer), '-inf', both)) do
      hist_drop(id)
    end
  end
end
return 1
""")

# ARGV: keep (ms; 0: none), cap. The history's settings (as the nodes were started with), and at most
# $BATCH of the records kept longer ago than keep dropped. -> how many
TRIMH = _script("""
redis.call('HSET', P .. ':h:cfg', 'keep', ARGV[1], 'cap', ARGV[2])
local before = now_ms() - tonumber(ARGV[1])
local old = redis.call('ZRANGEBYSCORE', P .. ':h:all', '-inf', '(' .. before, 'LIMIT', 0, $BATCH)
for _, id in ipairs(old) do hist_drop(id) end
return #old
""".replace("$BATCH", str(HISTORY_TRIM_BATCH)))
