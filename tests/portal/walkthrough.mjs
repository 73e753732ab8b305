// The portal's walkthrough in a real browser: the seed's "Create and register an AWS KMS
// CMK in the Astra Portal" (steps 1-13) as a person would click it, against a running
// `keyplane serve --dev` (tests/portal/run.sh starts one and sets the environment):
//
//   KEYPLANE_API_URL      the server, e.g. http://127.0.0.1:PORT
//   KEYPLANE_TOKEN        the dev organization's application token
//   KEYPLANE_BIN          the keyplane binary (its `kms` commands play the AWS console)
//   KEYPLANE_CREDENTIALS  dev-credentials.json, for `keyplane kms ... --credentials-file`
//   KEYPLANE_WORK         a scratch folder (policy files)
//   KEYPLANE_KEY_ARN      optional: an existing key of the built-in KMS to use
//   KEYPLANE_CLI_STATEMENTS  optional: `keyplane key policy` output, to compare with the page's
//   KEYPLANE_SCREENSHOTS  optional: where the screenshots go (default target/portal-screenshots)
//
//   node tests/portal/walkthrough.mjs [--keep-going] [--only a,b,...]
//
// Headless Debian Chromium through playwright-core (no browser download). One full-page
// screenshot per step, NN-step-name.png; on a failure NN-step-FAILED.png. Fails fast unless
// --keep-going (then every later step starts from its own page and the run still fails).
// Every console error and uncaught page error fails the run at the end.
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';

const here = path.dirname(fileURLToPath(import.meta.url));
const root = path.resolve(here, '..', '..');

function need(name) {
  const v = process.env[name];
  if (!v) {
    console.error(`walkthrough: ${name} is not set (run it through tests/portal/run.sh)`);
    process.exit(2);
  }
  return v;
}
const API = need('KEYPLANE_API_URL').replace(/\/$/, '');
const TOKEN = need('KEYPLANE_TOKEN');
const BIN = need('KEYPLANE_BIN');
const CREDS = need('KEYPLANE_CREDENTIALS');
const WORK = need('KEYPLANE_WORK');
const SHOTS = path.resolve(root, process.env.KEYPLANE_SCREENSHOTS || 'target/portal-screenshots');
const CHROMIUM = process.env.CHROMIUM || '/usr/bin/chromium';

const argv = process.argv.slice(2);
const keepGoing = argv.includes('--keep-going');
const onlyIdx = argv.indexOf('--only');
const only = onlyIdx >= 0 ? new Set((argv[onlyIdx + 1] || '').split(',').filter(Boolean)) : null;

const DESKTOP = { width: 1280, height: 800 };
const PHONE = { width: 390, height: 844 };
const TYPE = 'classic';
const PROVIDER = 'aws';
const REGION = 'us-east-2';
const OTHER_REGION = 'eu-west-1';
const DB_NAME = 'portaldb';
const ROOT_STATEMENT = {
  Sid: 'Enable IAM User Permissions',
  Effect: 'Allow',
  Principal: { AWS: 'arn:aws:iam::111111111111:root' },
  Action: 'kms:*',
  Resource: '*',
};

/** The platform role's statements bound to organization `org`, written out as the page must
 *  show them (not taken from keyplane): every use AWS gives an encryption context only with
 *  the organization's, grants only carrying it, the uncontexted calls apart. */
function boundStatements(role, org) {
  const onlyOrg = { StringEquals: { 'kms:EncryptionContext:organization': org } };
  return [
    { Sid: 'Allow an external account to use this KMS key', Effect: 'Allow', Principal: { AWS: role },
      Action: ['kms:Encrypt', 'kms:Decrypt', 'kms:GenerateDataKey', 'kms:GenerateDataKeyWithoutPlaintext', 'kms:ReEncryptTo', 'kms:ReEncryptFrom'],
      Resource: '*', Condition: onlyOrg },
    { Sid: 'Allow an external account to describe this KMS key', Effect: 'Allow', Principal: { AWS: role },
      Action: ['kms:EnableKey', 'kms:DescribeKey'], Resource: '*' },
    { Sid: 'Allow attachment of persistent resources', Effect: 'Allow', Principal: { AWS: role },
      Action: ['kms:CreateGrant'], Resource: '*', Condition: onlyOrg },
    { Sid: 'Allow an external account to list and revoke its grants', Effect: 'Allow', Principal: { AWS: role },
      Action: ['kms:ListGrants', 'kms:RevokeGrant'], Resource: '*' },
  ];
}

/** The seed document's policy as keys were made before the binding: usable for any organization. */
function seedPolicy(role) {
  return { Version: '2012-10-17', Statement: [ROOT_STATEMENT,
    { Sid: 'Allow an external account to use this KMS key', Effect: 'Allow', Principal: { AWS: role },
      Action: ['kms:EnableKey', 'kms:Encrypt', 'kms:Decrypt', 'kms:GenerateDataKey', 'kms:GenerateDataKeyWithoutPlaintext',
        'kms:ReEncryptTo', 'kms:ReEncryptFrom', 'kms:DescribeKey'], Resource: '*' },
    { Sid: 'Allow attachment of persistent resources', Effect: 'Allow', Principal: { AWS: role },
      Action: ['kms:CreateGrant', 'kms:ListGrants', 'kms:RevokeGrant'], Resource: '*' }] };
}

// ------------------------------------------------------------------ helpers

let shotNo = 0;
let currentStep = '';
async function shot(page, name) {
  shotNo += 1;
  const file = path.join(SHOTS, `${String(shotNo).padStart(2, '0')}-${name}.png`);
  await page.screenshot({ path: file, fullPage: true });
  return file;
}

const escapeRe = (s) => s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
const pathIs = (p) => new RegExp(`^${escapeRe(API)}${escapeRe(p)}(\\?.*)?$`);

function keyplane(...args) {
  try {
    return execFileSync(BIN, args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
  } catch (e) {
    throw new Error(`keyplane ${args.join(' ')} failed (${e.status}): ${e.stderr || e.message}`);
  }
}

function createKey(description) {
  const out = JSON.parse(keyplane('kms', 'create-key', '--credentials-file', CREDS, '--description', description));
  const arn = out?.KeyMetadata?.Arn;
  assert.match(arn || '', /^arn:aws:kms:[a-z0-9-]+:\d{12}:key\/.+/, `create-key gave no key ARN: ${JSON.stringify(out)}`);
  return arn;
}

function putPolicy(arn, policy, name) {
  const file = path.join(WORK, `${name}.json`);
  fs.writeFileSync(file, JSON.stringify(policy, null, 2));
  keyplane('kms', 'put-key-policy', '--credentials-file', CREDS, '--key-id', arn, '--policy-file', file);
}

/** The policy without kms:Decrypt for the provider's principal (the root's kms:* stays). */
function withoutDecrypt(policy) {
  const Statement = [];
  for (const s of policy.Statement) {
    if (s === ROOT_STATEMENT) { Statement.push(s); continue; }
    const actions = Array.isArray(s.Action) ? s.Action : [s.Action];
    const kept = actions.filter((a) => a !== 'kms:Decrypt');
    if (kept.length === 0) continue;
    Statement.push({ ...s, Action: Array.isArray(s.Action) ? kept : kept[0] });
  }
  return { ...policy, Statement };
}

/** Polls `fn` (async, returns a truthy value when done) until `ms` pass. */
async function until(what, fn, ms = 10_000, every = 200) {
  const end = Date.now() + ms;
  let last;
  for (;;) {
    try {
      const v = await fn();
      if (v) return v;
    } catch (e) {
      last = e;
    }
    if (Date.now() > end) {
      throw new Error(`timed out after ${ms / 1000} s waiting for ${what}${last ? ` (last error: ${last.message})` : ''}`);
    }
    await new Promise((r) => setTimeout(r, every));
  }
}

const text = async (loc) => ((await loc.textContent()) || '').replace(/\s+/g, ' ').trim();

/** A link or button in the signed-in page header. */
const headerLink = (page, name) => page.locator('header').getByRole('link', { name, exact: true });

async function noHorizontalOverflow(page, what) {
  const [sw, iw, wide] = await page.evaluate(() => {
    const iw = window.innerWidth;
    // The outermost elements that stick out on the right, to name in the message.
    const out = [...document.querySelectorAll('body *')].filter((el) => el.getBoundingClientRect().right > iw + 0.5);
    const outer = out.filter((el) => !out.includes(el.parentElement)).slice(0, 5)
      .map((el) => `<${el.tagName.toLowerCase()}${el.id ? `#${el.id}` : ''}${el.className && typeof el.className === 'string' ? `.${el.className.trim().split(/\s+/).join('.')}` : ''}> right edge ${Math.round(el.getBoundingClientRect().right)}px`);
    return [document.documentElement.scrollWidth, iw, outer];
  });
  assert.ok(sw <= iw, `${what} overflows horizontally at ${iw}px: scrollWidth ${sw}; sticking out: ${wide.join(', ')}`);
}

/** Every visible-type form control on the page has a label (or an aria-label). */
async function allControlsLabelled(page, what) {
  const unlabelled = await page.evaluate(() =>
    [...document.querySelectorAll('input, select, textarea')]
      .filter((el) => el.type !== 'hidden')
      .filter((el) => !(el.labels && el.labels.length > 0) && !el.getAttribute('aria-label') && !el.getAttribute('aria-labelledby'))
      .map((el) => el.outerHTML.slice(0, 120)));
  assert.deepEqual(unlabelled, [], `${what}: controls without a label: ${unlabelled.join(' | ')}`);
}

/** Refusals a step expects: the browser logs "Failed to load resource: ... status of 4xx" for
 *  a page served with an error status, which is the portal's way of refusing a form. */
const expectedRefusals = [];
/** A URL without its #fragment (forms post to an anchor; the response URL carries none). */
const sansFragment = (u) => u.split('#')[0];

/** Clicks a submit button whose form the server must refuse (4xx, the form again). */
async function submitRefused(page, button, pathname) {
  const res = await submitted(page, button, pathname);
  assert.ok(res, `clicking ${button} sent no POST to ${pathname}`);
  assert.ok(res.status() >= 400 && res.status() < 500, `POST ${new URL(res.url()).pathname} answered ${res.status()}, not a refusal (4xx)`);
  return res;
}

/** Clicks a submit button and returns the POST's response (null if the browser sent none,
 *  e.g. its own validation stopped the form). A 4xx is recorded as an expected refusal. */
async function submitted(page, button, pathname, ms = 10_000) {
  const match = (p) => (pathname instanceof RegExp ? pathname.test(p) : p === pathname);
  const [res] = await Promise.all([
    page.waitForResponse((r) => r.request().method() === 'POST' && match(new URL(r.url()).pathname), { timeout: ms }).catch(() => null),
    button.click(),
  ]);
  await page.waitForLoadState();
  if (res && res.status() >= 400 && res.status() < 500) expectedRefusals.push({ url: res.url(), status: res.status() });
  return res;
}

/** The database's row on the Databases page. */
const dbRow = (page, dbId) => page.locator(`tr[data-db-id="${dbId}"]`);

// ------------------------------------------------------------------ state shared by the steps

const s = {
  orgName: '',
  orgId: '',
  accountId: '',
  statements: null, // read from the page's #policy
  arn: process.env.KEYPLANE_KEY_ARN || '',
  goodPolicy: null,
  badArn: '',
  dbId: '',
};
const requireState = (key, from) => {
  if (!s[key]) throw new Error(`needs ${key} from step ${from}, which did not pass`);
  return s[key];
};

// ------------------------------------------------------------------ the steps

const steps = [
  {
    id: 'a', name: 'sign-in', start: '/portal/signin',
    async run(page, ctx) {
      await page.goto(`${API}/portal/signin`);
      await page.locator('#token').fill(TOKEN);
      await shot(page, 'sign-in-form');
      await page.getByRole('button', { name: 'Sign in', exact: true }).click();
      await page.waitForURL(pathIs('/portal/keys'));
      await page.getByRole('heading', { level: 1, name: 'Key Encryption' }).waitFor();
      const cookies = await ctx.cookies(API);
      const session = cookies.find((c) => c.name === 'kp_session');
      assert.ok(session, `no kp_session cookie after sign-in (cookies: ${cookies.map((c) => c.name).join(', ')})`);
      assert.equal(session.httpOnly, true, 'kp_session is not HttpOnly');
      assert.equal(session.sameSite, 'Strict', `kp_session is SameSite=${session.sameSite}, not Strict`);
      const secret = TOKEN.split(':').pop();
      const stored = await page.evaluate(() => {
        const all = [];
        for (const st of [localStorage, sessionStorage]) for (let i = 0; i < st.length; i++) all.push(`${st.key(i)}=${st.getItem(st.key(i))}`);
        return all.join('\n');
      });
      assert.ok(!stored.includes(secret), 'the token is in localStorage or sessionStorage');
      assert.ok(!(await page.content()).includes(secret), 'the token is in the page');
      assert.ok(!cookies.some((c) => c.value.includes(secret)), 'the token is in a cookie');
      await shot(page, 'signed-in-keys');
      return 'signed in; kp_session is HttpOnly, SameSite=Strict; no token in storage, cookies or page';
    },
  },
  {
    id: 'b', name: 'settings-org-security', start: '/portal/keys',
    async run(page) {
      const org = await (await fetch(`${API}/v2/currentOrg`, { headers: { Authorization: `Bearer ${TOKEN}` } })).json();
      s.orgName = org.name || org.orgName || '';
      s.orgId = org.id || '';
      assert.ok(s.orgName, `GET /v2/currentOrg gave no organization name: ${JSON.stringify(org)}`);
      assert.ok(s.orgId, `GET /v2/currentOrg gave no organization ID: ${JSON.stringify(org)}`);
      await headerLink(page, 'Settings').click();
      await page.waitForURL(pathIs('/portal/settings'));
      const filter = page.locator('select#org-filter');
      await filter.waitFor({ timeout: 5_000 }).catch(() => {
        throw new Error('no select#org-filter (the enterprise/organization filter) on /portal/settings');
      });
      const byLabel = page.getByLabel('Enterprise / organization');
      assert.equal(await byLabel.evaluate((el) => el.id), 'org-filter', 'the label "Enterprise / organization" is not the filter\'s');
      const options = await filter.locator('option').allTextContents();
      assert.ok(options.some((o) => o.includes(s.orgName)), `the filter does not list ${s.orgName}: ${options.join(' | ')}`);
      // Picking the organization changes the session: a form posting with the CSRF token.
      const orgButton = page.locator('#org-list').getByRole('button', { name: s.orgName });
      assert.ok((await orgButton.count()) >= 1, `#org-list has no button named ${s.orgName}`);
      const form = orgButton.first().locator('xpath=ancestor::form[1]');
      assert.equal((await form.getAttribute('method') || '').toLowerCase(), 'post', 'picking an organization is not a POST');
      assert.ok(await form.locator('input[type=hidden][name=csrf]').count(), 'the organization form carries no CSRF token');
      await Promise.all([page.waitForURL(/\/portal\/settings\?.*managing=/), orgButton.first().click()]);
      await page.waitForLoadState();
      assert.match(page.url(), /\/portal\/settings/, `clicking the organization left Settings: ${page.url()}`);
      const selected = await page.locator('select#org-filter').evaluate((el) => el.selectedOptions[0]?.textContent || '');
      assert.ok(selected.includes(s.orgName), `after clicking the organization the filter shows "${selected}", not ${s.orgName}`);
      await shot(page, 'settings');
      await page.locator('nav[aria-label="Settings"]').getByRole('link', { name: 'Security' }).click();
      await page.waitForURL(pathIs('/portal/keys'));
      await page.getByRole('heading', { level: 1, name: 'Key Encryption' }).waitFor();
      await shot(page, 'security-key-encryption');
      return `Settings lists ${s.orgName} in the filter and the Organizations list; Settings › Security opens Key Encryption`;
    },
  },
  {
    id: 'c', name: 'add-keys-provider-id-policy', start: '/portal/keys',
    async run(page) {
      await page.getByRole('link', { name: 'Add Keys', exact: true }).click();
      await page.waitForURL(pathIs('/portal/keys/new'));
      await page.locator(`input[type=radio][name=type][value=${TYPE}]`).check();
      await page.getByRole('button', { name: 'Continue' }).click();
      await page.locator(`input[type=radio][name=provider][value=${PROVIDER}]`).check();
      await page.getByRole('button', { name: 'Continue' }).click();
      await page.locator(`input[type=radio][name=region][value=${REGION}]`).check();
      const disabled = await page.locator('input[type=radio][name=region]:disabled').evaluateAll((els) =>
        els.map((el) => ({ value: el.value, label: (el.closest('label')?.textContent || [...el.labels].map((l) => l.textContent).join(' ')).trim() })));
      for (const d of disabled) assert.match(d.label, /contact support/i, `disabled region ${d.value} does not say "contact support": ${d.label}`);
      await page.getByRole('button', { name: 'Continue' }).click();
      await page.waitForURL(/\/portal\/keys\/new\?.*region=/);
      assert.ok(await page.locator(`input[type=radio][name=region][value=${REGION}]`).isChecked(), `${REGION} is not checked after Continue`);
      s.accountId = await text(page.locator('#provider-id'));
      assert.match(s.accountId, /^\d{12}$/, `#provider-id is not a 12-digit account: "${s.accountId}"`);
      const policyText = await page.locator('#policy').textContent();
      let statements;
      try {
        statements = JSON.parse(`[${policyText}]`);
      } catch (e) {
        throw new Error(`#policy is not a list of JSON statements: ${e.message}\n${policyText}`);
      }
      assert.ok(statements.length > 0, '#policy has no statements');
      assert.ok(statements.some((st) => JSON.stringify(st.Principal || '').includes(s.accountId)),
        `no statement's principal contains the provider account ${s.accountId}`);
      const orgId = requireState('orgId', 'b');
      assert.deepEqual(statements, boundStatements(`arn:aws:iam::${s.accountId}:role/creator`, orgId),
        'the page\'s statements are not the organization-bound ones');
      if (process.env.KEYPLANE_CLI_STATEMENTS) {
        const cli = JSON.parse(fs.readFileSync(process.env.KEYPLANE_CLI_STATEMENTS, 'utf8')).statements;
        assert.deepEqual(statements, cli, 'the page\'s statements differ from `keyplane key policy --type classic --region us-east-2`');
      }
      s.statements = statements;
      const copy = page.locator('button.copy[data-target="provider-id"]');
      await ((await copy.count()) ? copy : page.locator('button.copy').first()).click();
      const clip = await until('the clipboard to hold the Cloud Provider ID',
        async () => { const t = (await page.evaluate(() => navigator.clipboard.readText())).trim(); return t === s.accountId && t; }, 5_000);
      assert.equal(clip, s.accountId);
      await shot(page, 'add-keys-classic-aws-us-east-2');
      return `Cloud Provider ID ${s.accountId}, ${statements.length} policy statements; Copy put the ID on the clipboard${disabled.length ? `; ${disabled.length} locked regions say contact support` : ''}`;
    },
  },
  {
    id: 'd', name: 'kms-put-policy', start: null,
    async run(page) {
      const statements = requireState('statements', 'c');
      if (!s.arn) s.arn = createKey('portal');
      s.goodPolicy = { Version: '2012-10-17', Statement: [ROOT_STATEMENT, ...statements] };
      putPolicy(s.arn, s.goodPolicy, 'policy-good');
      const got = keyplane('kms', 'get-key-policy', '--credentials-file', CREDS, '--key-id', s.arn);
      assert.ok(got.includes(s.accountId), `the key's policy as read back does not name ${s.accountId}`);
      await shot(page, 'kms-policy-put'); // the page the statements came from, as the person leaves it
      return `key ${s.arn} has the page's statements in its policy (with the account root's)`;
    },
  },
  {
    id: 'e', name: 'check-pasted-policy', start: `/portal/keys/new?type=${TYPE}&provider=${PROVIDER}&region=${REGION}`,
    async run(page) {
      const good = requireState('goodPolicy', 'd');
      const box = page.locator('textarea#policy-paste');
      await box.waitFor({ timeout: 5_000 }).catch(() => { throw new Error('no textarea#policy-paste on the Add Keys page'); });
      const check = async (policy) => {
        await page.locator('textarea#policy-paste').fill(JSON.stringify(policy, null, 2));
        const before = await text(page.locator('#policy-findings')).catch(() => '');
        await page.getByRole('button', { name: 'Check policy' }).click();
        return until('#policy-findings to show the findings', async () => {
          const t = await text(page.locator('#policy-findings'));
          return t && t !== before && t;
        });
      };
      const okFindings = await check(good);
      assert.match(okFindings, /grants everything/i, `the complete policy's findings do not say "grants everything": ${okFindings}`);
      await shot(page, 'policy-check-complete');
      const badFindings = await check(withoutDecrypt(good));
      assert.match(badFindings, /kms:Decrypt/, `the findings for a policy without kms:Decrypt do not name it: ${badFindings}`);
      await shot(page, 'policy-check-missing-decrypt');
      const unbound = await check(seedPolicy(`arn:aws:iam::${s.accountId}:role/creator`));
      assert.match(unbound, /any organization/, `the findings for the unbound seed policy do not say "any organization": ${unbound}`);
      assert.match(unbound, /kms:EncryptionContext:organization/, `the findings do not show the condition to add: ${unbound}`);
      await shot(page, 'policy-check-unbound');
      return 'the pasted complete policy "grants everything"; without kms:Decrypt the finding names kms:Decrypt; the unbound seed policy is usable "for any organization"';
    },
  },
  {
    id: 'f', name: 'wrong-region-key', start: `/portal/keys/new?type=${TYPE}&provider=${PROVIDER}&region=${REGION}`,
    async run(page) {
      const arn = requireState('arn', 'd');
      const wrong = arn.replace(`:${REGION}:`, `:${OTHER_REGION}:`);
      assert.notEqual(wrong, arn, `the key ARN ${arn} is not in ${REGION}`);
      await ensureKeyForm(page);
      const input = page.locator('#key_id');
      await input.fill('');
      await input.pressSequentially(wrong);
      const problems = [];
      let asYouType = '';
      try {
        asYouType = await until('#key-format to mention the region', async () => {
          const t = await text(page.locator('#key-format'));
          return /region|eu-west-1|us-east-2/i.test(t) && t;
        }, 3_000);
      } catch (e) {
        problems.push(`as-you-type: ${(await page.locator('#key-format').count()) ? 'no region message in #key-format' : 'no #key-format element'}`);
      }
      await shot(page, 'key-id-wrong-region-typed');
      const res = await submitRefused(page, page.getByRole('button', { name: 'Add Key', exact: true }), '/portal/keys');
      const err = await text(page.locator('#key-error'));
      assert.ok(err, 'no #key-error after Add Key with a wrong-region ARN');
      assert.equal(await page.locator('#key_id').inputValue(), wrong, 'the form lost the typed key ID');
      await shot(page, 'key-id-wrong-region-refused');
      if (problems.length) throw new Error(`${problems.join('; ')} (the server's refusal worked: ${res.status()} "${err}")`);
      return `as you type: "${asYouType}"; Add Key: ${res.status()} "${err}", key ID kept`;
    },
  },
  {
    id: 'g', name: 'policy-missing-decrypt', start: `/portal/keys/new?type=${TYPE}&provider=${PROVIDER}&region=${REGION}`,
    async run(page) {
      const good = requireState('goodPolicy', 'd');
      s.badArn = createKey('portal-missing-decrypt');
      putPolicy(s.badArn, withoutDecrypt(good), 'policy-missing-decrypt');
      await ensureKeyForm(page);
      await page.locator('#key_id').fill(s.badArn);
      const res = await submitRefused(page, page.getByRole('button', { name: 'Add Key', exact: true }), '/portal/keys');
      const err = await text(page.locator('#key-error'));
      assert.match(err, /kms:Decrypt/, `#key-error does not name kms:Decrypt: "${err}"`);
      await shot(page, 'key-missing-decrypt-refused');
      return `refused (${res.status()}): "${err}"`;
    },
  },
  {
    id: 'h', name: 'add-key', start: `/portal/keys/new?type=${TYPE}&provider=${PROVIDER}&region=${REGION}`,
    async run(page) {
      const arn = requireState('arn', 'd');
      await ensureKeyForm(page);
      await page.locator('#key_id').fill(arn);
      const [res] = await Promise.all([
        page.waitForResponse((r) => r.request().method() === 'POST' && new URL(r.url()).pathname === '/portal/keys'),
        page.getByRole('button', { name: 'Add Key', exact: true }).click(),
      ]);
      if (res.status() !== 303) {
        const why = await text(page.locator('#key-error')).catch(() => '');
        throw new Error(`Add Key answered ${res.status()}, not a redirect to the keys page${why ? `: "${why}"` : ''}`);
      }
      await page.waitForURL((u) => u.pathname === '/portal/keys' && u.search !== '');
      await page.getByRole('heading', { level: 1, name: 'Key Encryption' }).waitFor();
      const notices = await page.locator('[role=status], .notice').allTextContents();
      assert.ok(notices.some((n) => n.includes(arn)), `no notice naming the key on /portal/keys: ${JSON.stringify(notices)}`);
      const row = page.locator(`tr[data-key-id="${arn}"]`);
      assert.equal(await row.count(), 1, `no row tr[data-key-id="${arn}"] on /portal/keys`);
      const rowText = await text(row);
      assert.ok(rowText.includes('AVAILABLE'), `the key's row does not show AVAILABLE: ${rowText}`);
      assert.ok(rowText.includes(REGION), `the key's row does not show ${REGION}: ${rowText}`);
      await shot(page, 'key-added');
      return `added; the row shows ${REGION} AVAILABLE`;
    },
  },
  {
    id: 'i', name: 'create-database', start: '/portal/keys',
    async run(page) {
      const arn = requireState('arn', 'd');
      await headerLink(page, 'Databases').click();
      await page.waitForURL(pathIs('/portal/databases'));
      const create = page.locator('a#create-db');
      assert.equal(await create.count(), 1, 'no a#create-db ("Create Database") on /portal/databases');
      assert.match(await text(create), /Create Database/);
      await create.click();
      await page.waitForURL(pathIs('/portal/databases/new'));
      await page.locator('#db-name').fill(DB_NAME);
      await page.locator('#db-type').selectOption(TYPE);
      await page.locator('#db-provider').selectOption(PROVIDER);
      await page.locator('#db-region').selectOption(REGION);
      await page.locator('#db-tier').selectOption('C10');
      const notice = page.locator('#encryption-notice');
      await until(`#encryption-notice to name ${arn}`, async () => (await text(notice)).includes(arn), 5_000);
      await shot(page, 'create-database-customer-key');
      await page.locator('#db-region').selectOption(OTHER_REGION);
      const platform = await until('#encryption-notice to say platform-managed for eu-west-1',
        async () => { const t = await text(notice); return /platform-managed/i.test(t) && !t.includes(arn) && t; }, 5_000);
      await shot(page, 'create-database-platform-key');
      await page.locator('#db-region').selectOption(REGION);
      await until(`#encryption-notice to name ${arn} again`, async () => (await text(notice)).includes(arn), 5_000);
      await page.getByRole('button', { name: 'Create Database', exact: true }).click();
      await page.waitForURL(pathIs('/portal/databases'));
      const row = page.locator('tr[data-db-id]').filter({ has: page.locator('td.db-name', { hasText: new RegExp(`^\\s*${DB_NAME}\\s*$`) }) });
      assert.equal(await row.count(), 1, `no row tr[data-db-id] with td.db-name ${DB_NAME}`);
      s.dbId = await row.getAttribute('data-db-id');
      assert.ok((await text(row.locator('td.db-encryption'))).includes(arn), 'td.db-encryption does not show the customer key');
      await page.evaluate(() => { window.__kpNotReloaded = true; });
      const start = Date.now();
      await until('td.db-status to read ACTIVE without a reload', async () => /ACTIVE/.test(await text(dbRow(page, s.dbId).locator('td.db-status'))), 60_000, 500);
      assert.equal(await page.evaluate(() => window.__kpNotReloaded === true), true, 'the Databases page reloaded (it should update itself)');
      await shot(page, 'database-active');
      return `${DB_NAME} (${s.dbId}) encrypted by the customer key; platform-managed shown for ${OTHER_REGION} ("${platform}"); ACTIVE after ${((Date.now() - start) / 1000).toFixed(1)} s, live`;
    },
  },
  {
    id: 'r', name: 'revoke-and-unrevoke', start: '/portal/keys',
    async run(page) {
      const arn = requireState('arn', 'd');
      const dbId = requireState('dbId', 'i');
      await page.goto(`${API}/portal/keys`);
      const row = () => page.locator(`tr[data-key-id="${arn}"]`);
      await row().getByRole('link', { name: /^Revoke/ }).click();
      await page.waitForURL((u) => u.pathname === '/portal/keys/revoke');
      const affected = await text(page.locator('#revoke-affected'));
      assert.ok(affected.includes(`${dbId}-1`), `the confirmation does not name ${dbId}-1 among the datacenters it suspends: "${affected}"`);
      await shot(page, 'revoke-confirm');
      await page.getByRole('button', { name: 'Revoke key' }).click();
      await page.waitForURL((u) => u.pathname === '/portal/keys' && u.searchParams.has('revoked'));
      assert.match(await text(row().locator('.status')), /REVOKED/, 'the key row does not read REVOKED after Revoke');
      assert.match(await text(row()), /revoked by the customer/, 'the key row does not give the reason');
      await shot(page, 'key-revoked');
      await headerLink(page, 'Databases').click();
      await page.waitForURL(pathIs('/portal/databases'));
      await until('td.db-status to read SUSPENDED', async () => /SUSPENDED/.test(await text(dbRow(page, dbId).locator('td.db-status'))), 10_000);
      await shot(page, 'database-suspended-by-revoke');
      await page.goto(`${API}/portal/keys`);
      await row().getByRole('button', { name: 'Unrevoke' }).click();
      await page.waitForURL((u) => u.pathname === '/portal/keys' && u.searchParams.has('unrevoked'));
      assert.match(await text(row().locator('.status')), /IN_USE/, 'the key row does not read IN_USE after Unrevoke');
      await headerLink(page, 'Databases').click();
      await page.waitForURL(pathIs('/portal/databases'));
      await until('td.db-status to read ACTIVE again', async () => /ACTIVE/.test(await text(dbRow(page, dbId).locator('td.db-status'))), 10_000);
      return `revoked: the key REVOKED and ${DB_NAME} SUSPENDED; unrevoked: IN_USE and ACTIVE again`;
    },
  },
  {
    id: 'rw', name: 'replace-and-rewrap', start: '/portal/keys',
    async run(page) {
      const arn = requireState('arn', 'd');
      const dbId = requireState('dbId', 'i');
      const good = requireState('goodPolicy', 'd');
      const next = createKey('portal-replacement');
      putPolicy(next, good, 'policy-replacement');
      await page.goto(`${API}/portal/keys`);
      const form = page.locator(`tr[data-key-id="${arn}"] form.replace-key`);
      assert.equal(await form.count(), 1, `no form.replace-key in the row of ${arn}`);
      await form.getByLabel(/New key ID/).fill(next);
      await form.getByRole('button', { name: 'Replace' }).click();
      await page.waitForURL((u) => u.pathname === '/portal/keys' && u.searchParams.get('replaced') === next);
      const row = page.locator(`tr[data-key-id="${next}"]`);
      assert.equal(await row.count(), 1, `no row for the new key ${next} after Replace`);
      assert.equal(await page.locator(`tr[data-key-id="${arn}"]`).count(), 0, 'the old key still has a row of its own');
      const earlier = row.locator(`.previous-key[data-previous-key="${arn}"]`);
      assert.match(await text(earlier), /1 datacenter/, `the new key's row does not say the old key still encrypts ${DB_NAME}`);
      await shot(page, 'key-replaced');
      await headerLink(page, 'Databases').click();
      await page.waitForURL(pathIs('/portal/databases'));
      const enc = dbRow(page, dbId).locator('td.db-encryption');
      assert.ok((await text(enc)).includes(arn), `${DB_NAME} should still be under ${arn} before the rewrap`);
      await shot(page, 'rewrap-due');
      await enc.getByRole('button', { name: 'Rewrap' }).click();
      await page.waitForURL((u) => u.pathname === '/portal/databases' && u.searchParams.get('rewrapped') === REGION);
      const after = await text(dbRow(page, dbId).locator('td.db-encryption'));
      assert.ok(after.includes(next) && !after.includes(arn), `after Rewrap the encryption column reads "${after}"`);
      assert.equal(await dbRow(page, dbId).locator('form.rewrap').count(), 0, 'a Rewrap button is still offered');
      assert.match(await text(dbRow(page, dbId).locator('td.db-status')), /ACTIVE/, `${DB_NAME} is not ACTIVE after the rewrap`);
      await page.goto(`${API}/portal/keys`);
      assert.equal(await page.locator(`tr[data-key-id="${next}"] .previous-key`).count(), 0, 'the old key is still listed as in use after the rewrap');
      await shot(page, 'rewrapped');
      await headerLink(page, 'Databases').click();
      await page.waitForURL(pathIs('/portal/databases'));
      return `replaced ${arn} by ${next}; ${DB_NAME} stayed under the old key until Rewrap moved it, ACTIVE throughout`;
    },
  },
  {
    id: 'rot', name: 'rotate-data-key', start: '/portal/databases',
    async run(page) {
      const dbId = requireState('dbId', 'i');
      const enc = dbRow(page, dbId).locator('td.db-encryption');
      assert.match(await text(enc.locator('.data-key-age')), /data key from deployment/, `the encryption column reads "${await text(enc)}" before a rotation`);
      await enc.getByRole('button', { name: 'Rotate data key' }).click();
      await page.waitForURL((u) => u.pathname === '/portal/databases' && u.searchParams.get('rotated') === REGION);
      const notice = await text(page.locator('p.notice[role=status]'));
      assert.match(notice, /Data key rotated/, `the notice reads "${notice}"`);
      const age = await text(dbRow(page, dbId).locator('td.db-encryption .data-key-age'));
      assert.match(age, /data key rotated \d{4}-\d{2}-\d{2}/, `after Rotate the data key's age reads "${age}"`);
      assert.match(await text(dbRow(page, dbId).locator('td.db-status')), /ACTIVE/, `${DB_NAME} is not ACTIVE after the rotation`);
      await shot(page, 'data-key-rotated');
      return `rotated the data key of ${DB_NAME}: ACTIVE throughout, its age shown`;
    },
  },
  {
    id: 'j', name: 'add-region-without-key', start: '/portal/databases',
    async run(page) {
      const dbId = requireState('dbId', 'i');
      const form = dbRow(page, dbId).locator('form.add-region');
      assert.equal(await form.count(), 1, "no form.add-region in the database's row");
      await form.locator('select[name=region]').selectOption(OTHER_REGION);
      await submitRefused(page, form.getByRole('button', { name: 'Add Region' }), new RegExp(`^/portal/databases/${escapeRe(dbId)}(/|$)`));
      const err = page.locator('#region-error');
      await err.waitFor({ timeout: 10_000 });
      assert.equal(await err.getAttribute('role'), 'alert', '#region-error is not role=alert');
      const msg = await text(err);
      assert.match(msg, /key/i, `#region-error does not speak of a key: ${msg}`);
      assert.ok(msg.includes(OTHER_REGION) || /regist/i.test(msg), `#region-error does not say no key is registered in ${OTHER_REGION}: ${msg}`);
      const link = page.locator('#region-error a.add-key-link, a.add-key-link').first();
      const href = new URL(await link.getAttribute('href'), API);
      assert.equal(href.pathname, '/portal/keys/new', `a.add-key-link goes to ${href}`);
      for (const [k, v] of [['type', TYPE], ['provider', PROVIDER], ['region', OTHER_REGION]]) {
        assert.equal(href.searchParams.get(k), v, `a.add-key-link's ${k} is ${href.searchParams.get(k)}, not ${v}`);
      }
      await shot(page, 'add-region-no-key');
      await link.click();
      await page.waitForURL(pathIs('/portal/keys/new'));
      assert.ok(await page.locator(`input[type=radio][name=region][value=${OTHER_REGION}]`).isChecked(), `${OTHER_REGION} is not preselected on Add Keys`);
      await shot(page, 'add-keys-eu-west-1-preselected');
      return `refused: "${msg}"; the link opens Add Keys with ${OTHER_REGION} checked`;
    },
  },
  {
    id: 'phone', name: 'phone-width', start: '/portal/keys',
    async run(page) {
      requireState('dbId', 'i');
      // (the run goes back to the desktop size before the next step, after any FAILED shot)
      await page.setViewportSize(PHONE);
      await page.goto(`${API}/portal/keys`);
      await noHorizontalOverflow(page, '/portal/keys');
      await shot(page, 'phone-keys');
      await page.goto(`${API}/portal/databases`);
      await noHorizontalOverflow(page, '/portal/databases');
      await shot(page, 'phone-databases');
      return `keys and databases pages fit ${PHONE.width}×${PHONE.height} with no horizontal scroll`;
    },
  },
  {
    id: 'k', name: 'terminate-database', start: '/portal/databases',
    async run(page, ctx) {
      const dbId = requireState('dbId', 'i');
      await headerLink(page, 'Databases').click();
      await page.waitForURL(pathIs('/portal/databases'));
      await dbRow(page, dbId).getByRole('link', { name: 'Terminate' }).click();
      await page.locator('#confirm-name').waitFor();
      assert.ok(!pathIs('/portal/databases').test(page.url()), 'Terminate did not open a confirmation page');
      const confirmUrl = page.url();
      const dbPath = new RegExp(`^/portal/databases/${escapeRe(dbId)}(/|$)`);
      const refused = async (what) => {
        const res = await submitted(page, page.getByRole('button', { name: 'Terminate database' }), dbPath, 3_000);
        if (res) assert.ok(res.status() >= 400, `${what}: the server answered ${res.status()}, not a refusal`);
        await until(`${what} to be refused`, async () => {
          const invalid = await page.locator('#confirm-name').evaluate((el) => !el.checkValidity()).catch(() => false);
          const shown = await page.locator('[role=alert], .error').filter({ hasText: /\S/ }).count();
          return invalid || shown > 0;
        }, 5_000);
        const other = await ctx.newPage();
        try {
          await other.goto(`${API}/portal/databases`);
          const st = await text(dbRow(other, dbId).locator('td.db-status'));
          assert.match(st, /ACTIVE/, `after ${what} the database is ${st || 'gone'}`);
        } finally {
          await other.close();
        }
      };
      await refused('confirming without the name');
      await shot(page, 'terminate-refused-without-name');
      await page.locator('#confirm-name').fill(`${DB_NAME}-not`);
      await refused('confirming with a wrong name');
      if (page.url() !== confirmUrl && !(await page.locator('#confirm-name').count())) throw new Error('the confirmation page went away after a wrong name');
      await page.locator('#confirm-name').fill(DB_NAME);
      await shot(page, 'terminate-confirm');
      await page.getByRole('button', { name: 'Terminate database' }).click();
      await page.waitForURL(pathIs('/portal/databases'));
      await page.evaluate(() => { window.__kpNotReloaded = true; });
      const st = await until('td.db-status to read TERMINATING or TERMINATED', async () => {
        const row = dbRow(page, dbId);
        if (!(await row.count())) return false;
        const t = await text(row.locator('td.db-status'));
        return /TERMINAT(ING|ED)/.test(t) && t;
      }, 30_000, 300);
      let final = st;
      try {
        final = await until('td.db-status to read TERMINATED (live)', async () => {
          const t = await text(dbRow(page, dbId).locator('td.db-status'));
          return /TERMINATED/.test(t) && t;
        }, 20_000, 500);
      } catch { /* TERMINATING is enough */ }
      if (/TERMINATED/.test(final)) {
        // The regions' badges in the Encryption column follow the database, live too.
        const badges = dbRow(page, dbId).locator('td.db-encryption .status');
        await until('the regions\' status badges to leave ACTIVE once the database is TERMINATED', async () => {
          const all = await badges.allTextContents();
          return !all.some((b) => /ACTIVE/.test(b));
        }, 6_000, 500).catch(async (e) => {
          throw new Error(`${e.message}: the row says ${final} but its regions say ${(await badges.allTextContents()).join(', ')}`);
        });
      }
      assert.equal(await page.evaluate(() => window.__kpNotReloaded === true), true, 'the Databases page reloaded (it should update itself)');
      await shot(page, 'database-terminating');
      return `refused without / with a wrong name; confirmed: ${st}${final !== st ? ` then ${final}` : ''}, live`;
    },
  },
  {
    id: 'l', name: 'audit', start: '/portal/keys',
    async run(page) {
      const arn = requireState('arn', 'd');
      await headerLink(page, 'Audit').click();
      await page.waitForURL(pathIs('/portal/audit'));
      const rows = page.locator('tr.audit-entry');
      const n = await rows.count();
      assert.ok(n >= 2, `only ${n} tr.audit-entry rows`);
      const times = await rows.evaluateAll((trs) => trs.slice(0, 2).map((tr) => tr.querySelector('time')?.getAttribute('datetime') || ''));
      assert.ok(times[0] && times[1], `audit rows have no <time datetime>: ${JSON.stringify(times)}`);
      assert.ok(Date.parse(times[0]) >= Date.parse(times[1]), `not newest first: ${times[0]} before ${times[1]}`);
      const all = await rows.allTextContents();
      assert.ok(all.some((t) => t.includes(arn) && /regist/i.test(t)), 'no audit entry of the key registration (naming the ARN)');
      if (s.dbId) {
        assert.ok(all.some((t) => (t.includes(s.dbId) || t.includes(DB_NAME)) && /creat/i.test(t)), `no audit entry of the database creation (${s.dbId})`);
      }
      await shot(page, 'audit');
      return `${n} entries, newest first, with the key registration${s.dbId ? ' and the database creation' : ''}`;
    },
  },
  {
    id: 'm', name: 'sign-out', start: '/portal/keys',
    async run(page, ctx) {
      await page.locator('header').getByRole('button', { name: 'Sign out' }).click();
      await page.waitForURL(pathIs('/portal/signin'));
      await shot(page, 'signed-out');
      const after = (await ctx.cookies(API)).find((c) => c.name === 'kp_session');
      assert.ok(!after || !after.value, 'kp_session is still set after sign-out');
      await page.goto(`${API}/portal/keys`);
      assert.match(page.url(), pathIs('/portal/signin'), `/portal/keys after sign-out is ${page.url()}, not the sign-in page`);
      return 'signed out; /portal/keys redirects to sign-in';
    },
  },
  {
    id: 'n', name: 'keyboard-and-labels', start: '/portal/signin',
    async run(page) {
      await page.goto(`${API}/portal/signin`);
      await page.locator('body').focus();
      const reached = [];
      for (let i = 0; i < 12; i++) {
        await page.keyboard.press('Tab');
        reached.push(await page.evaluate(() => {
          const el = document.activeElement;
          return el ? (el.id ? `#${el.id}` : `${el.tagName.toLowerCase()}:${(el.textContent || '').trim()}`) : '';
        }));
      }
      const ti = reached.indexOf('#token');
      const bi = reached.indexOf('button:Sign in');
      assert.ok(ti >= 0, `Tab never reaches #token: ${reached.join(' → ')}`);
      assert.ok(bi > ti, `Tab does not reach the Sign in button after #token: ${reached.join(' → ')}`);
      // Sign in from the keyboard alone, then check the forms' labels.
      await page.locator('#token').focus();
      await page.keyboard.type(TOKEN);
      await page.keyboard.press('Enter');
      await page.waitForURL(pathIs('/portal/keys'));
      await page.goto(`${API}/portal/keys/new?type=${TYPE}&provider=${PROVIDER}&region=${REGION}`);
      await allControlsLabelled(page, 'Add Keys');
      await page.goto(`${API}/portal/databases/new`);
      assert.ok((await page.locator('#db-name').count()) === 1, 'no Create Database form at /portal/databases/new');
      await allControlsLabelled(page, 'Create Database');
      await shot(page, 'create-database-form');
      return `Tab reaches #token then Sign in (${reached.slice(0, bi + 1).join(' → ')}); every control on Add Keys and Create Database is labelled`;
    },
  },
  {
    id: 'o', name: 'add-keys-google-cloud', start: '/portal/keys/new?type=classic&provider=gcp&region=us-east1',
    async run(page) {
      // Add Keys with Google Cloud: the platform's project, the service account to grant, the
      // bindings and gcloud commands with copy buttons; the key made and bound with
      // `keyplane kms gcp` (the customer's Cloud KMS console), then registered.
      await page.goto(`${API}/portal/keys/new?type=classic&provider=gcp&region=us-east1`);
      const project = await text(page.locator('#provider-id'));
      assert.equal(project, 'keyplane-dev', `#provider-id is not the platform's project: "${project}"`);
      const accounts = (await text(page.locator('#service-accounts'))).split(/\s+/).filter(Boolean);
      assert.ok(accounts.length >= 1 && accounts.every((a) => a.startsWith('serviceAccount:')),
        `#service-accounts lists no service account: ${accounts.join(' ')}`);
      const grant = JSON.parse(await text(page.locator('#policy')));
      const roles = (Array.isArray(grant) ? grant : grant.bindings || []).map((b) => b.role);
      for (const r of ['roles/cloudkms.cryptoKeyEncrypterDecrypter', 'roles/cloudkms.viewer']) {
        assert.ok(roles.includes(r), `the bindings to grant lack ${r}: ${JSON.stringify(grant)}`);
      }
      assert.match(await text(page.locator('#gcloud')), /gcloud kms keys add-iam-policy-binding/);
      for (const target of ['provider-id', 'service-accounts', 'policy', 'gcloud']) {
        assert.equal(await page.locator(`button.copy[data-target="${target}"]`).count(), 1, `no copy button for #${target}`);
      }
      await shot(page, 'add-keys-gcp-binding');
      const kmsCreds = path.join(path.dirname(CREDS), 'kms', 'credentials.json');
      const gcp = (...args) => keyplane('kms', 'gcp', ...args, '--credentials-file', CREDS, '--kms-credentials-file', kmsCreds);
      gcp('create-key-ring', '--key-ring', 'portal');
      gcp('create-key', '--key-ring', 'portal', '--key', 'orders');
      for (const a of accounts) {
        for (const r of ['roles/cloudkms.cryptoKeyEncrypterDecrypter', 'roles/cloudkms.viewer']) {
          gcp('add-iam-binding', '--key-ring', 'portal', '--key', 'orders', '--role', r, '--binding-member', a);
        }
      }
      const key = 'projects/customer-project/locations/us-east1/keyRings/portal/cryptoKeys/orders';
      await page.locator('#key_id').fill(key);
      const [res] = await Promise.all([
        page.waitForResponse((r) => r.request().method() === 'POST' && new URL(r.url()).pathname === '/portal/keys'),
        page.getByRole('button', { name: 'Add Key', exact: true }).click(),
      ]);
      if (res.status() !== 303) {
        const why = await text(page.locator('#key-error')).catch(() => '');
        throw new Error(`Add Key answered ${res.status()}, not a redirect to the keys page${why ? `: "${why}"` : ''}`);
      }
      await page.waitForURL((u) => u.pathname === '/portal/keys' && u.search !== '');
      const row = page.locator(`tr[data-key-id="${key}"]`);
      assert.equal(await row.count(), 1, `no row tr[data-key-id="${key}"] on /portal/keys`);
      const rowText = await text(row);
      assert.ok(rowText.includes('us-east1') && rowText.includes('AVAILABLE'), `the key's row: ${rowText}`);
      await shot(page, 'key-added-gcp');
      return `project ${project}, ${accounts.length} service account(s), both roles, gcloud commands; the key registered and listed AVAILABLE`;
    },
  },
];

/** Puts the page on the Add Keys form with the key ID field (classic, aws, us-east-2). */
async function ensureKeyForm(page) {
  if ((await page.locator('#key_id').count()) === 0 || !/\/portal\/keys/.test(page.url())) {
    await page.goto(`${API}/portal/keys/new?type=${TYPE}&provider=${PROVIDER}&region=${REGION}`);
  }
  await page.locator('#key_id').waitFor();
}

// ------------------------------------------------------------------ the run

async function main() {
  fs.mkdirSync(SHOTS, { recursive: true });
  for (const f of fs.readdirSync(SHOTS)) if (f.endsWith('.png')) fs.rmSync(path.join(SHOTS, f));
  fs.mkdirSync(WORK, { recursive: true });

  const t0 = Date.now();
  const browser = await chromium.launch({
    executablePath: CHROMIUM,
    headless: true,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
      '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  });
  const ctx = await browser.newContext({ viewport: DESKTOP, permissions: ['clipboard-read', 'clipboard-write'] });
  ctx.setDefaultTimeout(10_000);
  ctx.setDefaultNavigationTimeout(15_000);
  const errors = [];
  const watch = (page) => {
    page.on('console', (m) => {
      if (m.type() === 'error') errors.push({ step: currentStep, kind: 'console error', url: m.location().url || page.url(), text: m.text() });
    });
    page.on('pageerror', (e) => errors.push({ step: currentStep, kind: 'page error', url: page.url(), text: e.message }));
  };
  ctx.on('page', watch);
  const page = await ctx.newPage();
  console.log(`== portal walkthrough: Chromium ${browser.version()} against ${API}; screenshots in ${path.relative(root, SHOTS) || SHOTS}`);

  const failed = [];
  let passed = 0;
  let previousFailed = false;
  for (const step of steps) {
    if (only && !only.has(step.id)) continue;
    currentStep = `${step.id} ${step.name}`;
    const t = Date.now();
    try {
      const vp = page.viewportSize();
      if (vp.width !== DESKTOP.width || vp.height !== DESKTOP.height) await page.setViewportSize(DESKTOP);
      if ((previousFailed || only) && step.start) await page.goto(`${API}${step.start}`);
      const what = await step.run(page, ctx);
      console.log(`ok ${step.id} ${step.name} (${((Date.now() - t) / 1000).toFixed(1)} s): ${what}`);
      passed += 1;
      previousFailed = false;
    } catch (e) {
      previousFailed = true;
      let where = '';
      try {
        shotNo += 1;
        const file = path.join(SHOTS, `${String(shotNo).padStart(2, '0')}-${step.name}-FAILED.png`);
        await page.screenshot({ path: file, fullPage: true });
        where = ` (page ${page.url()}, screenshot ${path.relative(root, file)})`;
      } catch { /* the page may be gone */ }
      const msg = `${step.id} ${step.name}: ${(e && e.message) || e}`.split('\n').slice(0, 6).join('\n');
      console.log(`FAILED ${msg}${where}`);
      failed.push(`step ${step.id} ${step.name}`);
      if (!keepGoing) break;
    }
  }
  currentStep = 'end';
  await browser.close();
  const secs = ((Date.now() - t0) / 1000).toFixed(1);
  // A refused form's page, served with the 4xx the step asserted, is not an error.
  const unexpected = errors.filter((e) => {
    const m = e.kind === 'console error' && /^Failed to load resource: the server responded with a status of (\d+)/.exec(e.text);
    const i = m ? expectedRefusals.findIndex((r) => sansFragment(r.url) === sansFragment(e.url) && r.status === Number(m[1])) : -1;
    if (i < 0) return true;
    expectedRefusals.splice(i, 1);
    return false;
  }).map((e) => `[${e.step}] ${e.kind} at ${e.url}: ${e.text}`);
  if (unexpected.length) {
    console.log(`FAILED browser errors (${unexpected.length}):\n  ${unexpected.join('\n  ')}`);
    failed.push('browser console/page errors');
  } else {
    console.log('ok browser errors: no console error and no uncaught page error');
    passed += 1;
  }
  const total = (only ? steps.filter((st) => only.has(st.id)).length : steps.length) + 1;
  console.log(`== portal walkthrough took ${secs} s`);
  const skipped = total - passed - failed.length;
  console.log(`walkthrough: ${passed} passed, ${failed.length} failed${skipped ? `, ${skipped} skipped` : ''}`);
  if (failed.length) {
    console.error(`portal walkthrough FAILED: ${failed.join(', ')}`);
    process.exit(1);
  }
}

main().catch((e) => {
  console.error(`portal walkthrough crashed in ${currentStep || 'setup'}: ${e.stack || e}`);
  process.exit(1);
});
