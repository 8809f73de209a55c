// The DPoP + PAR code flow with panva's oauth4webapi, driven by
// interop/oauth4webapi_test.go: node flow.mjs ISSUER CLIENT_ID REDIRECT_URI ALG
//
// It prints one JSON line {"authorize": URL}, reads the URL the browser was
// sent back to (one line on stdin), and prints {"result": {...}}. Every
// token request and the push follow the library's documented DPoP nonce
// pattern: on use_dpop_nonce (isDPoPNonceError) retry once; the DPoP handle
// has cached the server's nonce.
import * as oauth from 'oauth4webapi'
import { createInterface } from 'node:readline'

const [issuerArg, clientID, redirectURI, alg] = process.argv.slice(2)
const lines = createInterface({ input: process.stdin })[Symbol.asyncIterator]()
const say = (o) => process.stdout.write(JSON.stringify(o) + '\n')
const http = { [oauth.allowInsecureRequests]: true } // the test server is http://127.0.0.1

let nonceRetries = 0
async function withNonceRetry(f) {
  try {
    return await f()
  } catch (err) {
    if (!oauth.isDPoPNonceError(err)) throw err
    nonceRetries++
    return await f()
  }
}

const issuer = new URL(issuerArg)
const as = await oauth.processDiscoveryResponse(issuer, await oauth.discoveryRequest(issuer, { algorithm: 'oidc', ...http }))
const client = { client_id: clientID }
const clientAuth = oauth.None()
const DPoP = oauth.DPoP(client, await oauth.generateKeyPair(alg))
const opts = { DPoP, ...http }

const codeVerifier = oauth.generateRandomCodeVerifier()
const state = oauth.generateRandomState()
const nonce = oauth.generateRandomNonce()
const params = new URLSearchParams({
  response_type: 'code',
  redirect_uri: redirectURI,
  scope: 'openid profile email',
  state,
  nonce,
  code_challenge: await oauth.calculatePKCECodeChallenge(codeVerifier),
  code_challenge_method: 'S256',
})
const par = await withNonceRetry(async () =>
  oauth.processPushedAuthorizationResponse(as, client, await oauth.pushedAuthorizationRequest(as, client, clientAuth, params, opts)))
const authorize = new URL(as.authorization_endpoint)
authorize.searchParams.set('client_id', clientID)
authorize.searchParams.set('request_uri', par.request_uri)
say({ authorize: authorize.href, request_uri: par.request_uri, code_verifier: codeVerifier })

const { value: callback } = await lines.next()
const callbackParams = oauth.validateAuthResponse(as, client, new URL(callback), state)
const tokens = await withNonceRetry(async () =>
  oauth.processAuthorizationCodeResponse(as, client,
    await oauth.authorizationCodeGrantRequest(as, client, clientAuth, callbackParams, redirectURI, codeVerifier, opts),
    { expectedNonce: nonce, requireIdToken: true }))
const claims = oauth.getValidatedIdTokenClaims(tokens)

const userinfo = await oauth.processUserInfoResponse(as, client, claims.sub, await oauth.userInfoRequest(as, client, tokens.access_token, opts))
const profile = await oauth.protectedResourceRequest(tokens.access_token, 'GET', new URL('/api/v1/profile', issuer), new Headers(), null, opts)
const profileBody = await profile.json()

const refreshed = await withNonceRetry(async () =>
  oauth.processRefreshTokenResponse(as, client, await oauth.refreshTokenGrantRequest(as, client, clientAuth, tokens.refresh_token, opts)))
const userinfo2 = await oauth.processUserInfoResponse(as, client, claims.sub, await oauth.userInfoRequest(as, client, refreshed.access_token, opts))

say({
  result: {
    token_type: tokens.token_type,
    access_token: tokens.access_token,
    refresh_token: tokens.refresh_token,
    id_token: tokens.id_token,
    sub: claims.sub,
    userinfo_sub: userinfo.sub,
    profile_status: profile.status,
    profile_username: profileBody.username,
    refreshed_token_type: refreshed.token_type,
    refreshed_access_token: refreshed.access_token,
    refreshed_refresh_token: refreshed.refresh_token,
    userinfo2_sub: userinfo2.sub,
    jkt: await DPoP.calculateThumbprint(),
    nonce_retries: nonceRetries,
  },
})
