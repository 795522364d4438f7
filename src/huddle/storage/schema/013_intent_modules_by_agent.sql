-- An announce looks up the other agents' active intents in my modules (service/signals.py). With the
-- primary key alone (project, module, intent_id) that read every row of the module, my own intents
-- included, and an agent holding many active intents in its module paid for each on every announce.
-- With the agent id in the index, the other agents' rows are two ranges: below my id and above it.
CREATE INDEX intent_modules_by_agent ON intent_modules (project, module, agent_id);
