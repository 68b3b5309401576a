-- Creates the consumer group when a queue is opened. When the stream already
-- held entries but the group was gone (an operator's XGROUP DESTROY, a
-- restore), this is a re-creation like regroup(): a new consumer epoch, so
-- receipts of the lost group's deliveries stay stale. A new queue (no
-- stream yet) keeps consumer 'c'. KEYS: the nine keys.
if redis.call('EXISTS', S) == 1 then
  regroup()
else
  redis.pcall('XGROUP', 'CREATE', S, G, '0', 'MKSTREAM')
end
return 1
