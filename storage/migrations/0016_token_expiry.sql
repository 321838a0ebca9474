-- API tokens expire. Tokens made before this keep working for a year from now; new ones get the days their
-- maker chose (lykta tokens create --days; a crew's 90, an operator's 365 by default).
ALTER TABLE api_tokens ADD COLUMN expires_at timestamptz;
UPDATE api_tokens SET expires_at = greatest(created_at, now()) + interval '365 days';
ALTER TABLE api_tokens ALTER COLUMN expires_at SET NOT NULL;
