-- faultline state, schema 2: the origin's service as a column, for
-- `GET /api/v1/verdicts?origin_service=`; rows of schema 1 get it from their body.
ALTER TABLE verdicts ADD COLUMN origin_service TEXT;
UPDATE verdicts SET origin_service = json_extract(body, '$.origin.service');
CREATE INDEX verdicts_by_origin_service ON verdicts (origin_service, analyzed_at);
