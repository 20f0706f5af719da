-- HEAL7 example database for config/heal7.yaml.
-- Run with: psql -v ON_ERROR_STOP=1 -d postgres -f config/heal7-example.sql
--
-- The tables live in seven per-service schemas. Stale copies of a few of them
-- are left in `public`, as after the real migration, holding different rows:
-- a query that reaches them shows 'STALE' and means a name was missed.

DROP DATABASE IF EXISTS heal7;
CREATE DATABASE heal7;
\connect heal7

CREATE SCHEMA shared_common;
CREATE SCHEMA saju_service;
CREATE SCHEMA dream_service;
CREATE SCHEMA tarot_service;
CREATE SCHEMA fortune_service;
CREATE SCHEMA crawler_service;
CREATE SCHEMA admin_service;

CREATE TABLE shared_common.users (
    id          bigserial PRIMARY KEY,
    email       text NOT NULL UNIQUE,
    name        text NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE shared_common.user_profiles (
    user_id     bigint PRIMARY KEY REFERENCES shared_common.users(id),
    birth_date  date,
    birth_time  time,
    gender      text
);
CREATE TABLE shared_common.attachments (
    id          bigserial PRIMARY KEY,
    user_id     bigint REFERENCES shared_common.users(id),
    path        text NOT NULL
);
CREATE TABLE shared_common.notifications (
    id          bigserial PRIMARY KEY,
    user_id     bigint REFERENCES shared_common.users(id),
    body        text NOT NULL,
    read        boolean NOT NULL DEFAULT false
);
CREATE TABLE shared_common.audit_logs (
    id          bigserial PRIMARY KEY,
    action      text NOT NULL,
    at          timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE saju_service.saju_charts (
    id          bigserial PRIMARY KEY,
    user_id     bigint REFERENCES shared_common.users(id),
    year_pillar text NOT NULL,
    month_pillar text NOT NULL,
    day_pillar  text NOT NULL,
    hour_pillar text
);
CREATE TABLE saju_service.saju_readings (
    id          bigserial PRIMARY KEY,
    chart_id    bigint REFERENCES saju_service.saju_charts(id),
    reading     text NOT NULL
);
CREATE TABLE saju_service.kasi_cache (
    solar_date  date PRIMARY KEY,
    lunar_date  text NOT NULL,
    payload     jsonb NOT NULL DEFAULT '{}'
);
CREATE TABLE saju_service.solar_terms (
    name        text PRIMARY KEY,
    starts_on   date NOT NULL
);

CREATE TABLE dream_service.dream_categories (
    id          serial PRIMARY KEY,
    name        text NOT NULL
);
CREATE TABLE dream_service.dream_interpretations (
    id          bigserial PRIMARY KEY,
    category_id int REFERENCES dream_service.dream_categories(id),
    keyword     text NOT NULL,
    meaning     text NOT NULL
);
CREATE TABLE dream_service.dream_keywords (
    keyword     text PRIMARY KEY,
    hits        bigint NOT NULL DEFAULT 0
);

CREATE TABLE tarot_service.tarot_cards (id serial PRIMARY KEY, name text NOT NULL);
CREATE TABLE tarot_service.tarot_readings (id bigserial PRIMARY KEY, card_id int REFERENCES tarot_service.tarot_cards(id), reading text);
CREATE TABLE fortune_service.daily_fortunes (day date, sign text, fortune text, PRIMARY KEY (day, sign));
CREATE TABLE fortune_service.zodiac_signs (sign text PRIMARY KEY, animal text NOT NULL);
CREATE TABLE crawler_service.crawl_jobs (id bigserial PRIMARY KEY, url text NOT NULL, state text NOT NULL DEFAULT 'queued');
CREATE TABLE crawler_service.crawl_results (job_id bigint REFERENCES crawler_service.crawl_jobs(id), body text);
CREATE TABLE admin_service.admin_users (id serial PRIMARY KEY, login text NOT NULL);
CREATE TABLE admin_service.site_settings (key text PRIMARY KEY, value text);

-- Not only tables: a view, a free sequence, a function and a type.
CREATE VIEW shared_common.active_users AS
    SELECT id, email, name FROM shared_common.users;
CREATE SEQUENCE saju_service.reading_no;
CREATE FUNCTION saju_service.pillar_of(chart_id bigint) RETURNS text
    LANGUAGE sql STABLE
    AS 'SELECT day_pillar FROM saju_service.saju_charts WHERE id = chart_id';
CREATE TYPE dream_service.dream_mood AS ENUM ('good', 'bad', 'neutral');

-- The crawler's own settings (not mapped) and the legacy services' settings,
-- still in public: the map's `public` entry keeps `settings` there.
CREATE TABLE crawler_service.settings (key text PRIMARY KEY, value text);
INSERT INTO crawler_service.settings VALUES ('user_agent', 'heal7-crawler');
CREATE TABLE public.settings (key text PRIMARY KEY, value text);
INSERT INTO public.settings VALUES ('maintenance', 'off');

INSERT INTO shared_common.users (email, name) VALUES
    ('alice@heal7.example', '김하늘'),
    ('bob@heal7.example', '이바다');
INSERT INTO saju_service.saju_charts (user_id, year_pillar, month_pillar, day_pillar, hour_pillar) VALUES
    (1, '갑자', '병인', '무진', '경신');
INSERT INTO saju_service.kasi_cache (solar_date, lunar_date) VALUES ('2026-11-26', '2026-10-07');
INSERT INTO dream_service.dream_categories (name) VALUES ('동물'), ('자연');
INSERT INTO dream_service.dream_interpretations (category_id, keyword, meaning) VALUES
    (1, '용', '큰 행운'), (2, '물', '재물');
INSERT INTO fortune_service.zodiac_signs VALUES ('rat', '쥐'), ('ox', '소');

-- The stale copies the migration left behind.
CREATE TABLE public.users (id bigserial PRIMARY KEY, email text, name text, created_at timestamptz DEFAULT now());
INSERT INTO public.users (email, name) VALUES ('STALE@heal7.example', 'STALE copy in public');
CREATE TABLE public.kasi_cache (solar_date date PRIMARY KEY, lunar_date text, payload jsonb);
INSERT INTO public.kasi_cache VALUES ('1999-01-01', 'STALE', '{}');
CREATE TABLE public.dream_categories (id serial PRIMARY KEY, name text);
INSERT INTO public.dream_categories (name) VALUES ('STALE');
CREATE VIEW public.active_users AS SELECT id, email, name FROM public.users;
