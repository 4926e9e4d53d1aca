-- The farm owner's signed invitation that admitted a node into its farm (JSON), kept as
-- evidence; NULL for nodes registered before farms took consent.
ALTER TABLE nodes ADD COLUMN farm_consent TEXT;
