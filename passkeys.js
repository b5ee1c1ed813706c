// Passkeys for the token_auth pages (served as {endpoint}/passkeys.js, under
// a Content-Security-Policy of script-src 'self': nothing here is inline).
// It does what the page asks by the elements it has:
//   login page    #passkey-button, an input with autocomplete "... webauthn"
//                 (autofill, started on load where the browser offers it)
//   account page  #passkey-add-form (a name field; registers a passkey)
//   invite page   #invite-button (registers the invited person's first passkey)
//   step-up page  #passkey-step-up (adds a passkey to a one-factor session)
//   code page     #passkey-step-up too (a passkey as the second step of a
//                 password login): the same ceremony, posted to its action
// Without JavaScript, or without passkeys in the browser, the pages work
// as before: the password form posts as a plain form.
(() => {
  'use strict';
  const script = document.currentScript;
  const endpoint = script.dataset.endpoint;

  const b64urlToBytes = (s) => {
    const b64 = s.replace(/-/g, '+').replace(/_/g, '/') + '==='.slice((s.length + 3) % 4);
    return Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
  };
  const bytesToB64url = (buf) => {
    let s = '';
    for (const b of new Uint8Array(buf)) s += String.fromCharCode(b);
    return btoa(s).replace(/\+/g, '-').replace(/\//g, '_').replace(/=+$/, '');
  };

  // The JSON forms of WebAuthn Level 3, with a fallback for browsers that
  // predate PublicKeyCredential.parse*OptionsFromJSON and toJSON.
  const creationOptions = (json) => {
    if (PublicKeyCredential.parseCreationOptionsFromJSON) return PublicKeyCredential.parseCreationOptionsFromJSON(json);
    return {
      ...json,
      challenge: b64urlToBytes(json.challenge),
      user: { ...json.user, id: b64urlToBytes(json.user.id) },
      excludeCredentials: (json.excludeCredentials || []).map((c) => ({ ...c, id: b64urlToBytes(c.id) })),
    };
  };
  const requestOptions = (json) => {
    if (PublicKeyCredential.parseRequestOptionsFromJSON) return PublicKeyCredential.parseRequestOptionsFromJSON(json);
    return {
      ...json,
      challenge: b64urlToBytes(json.challenge),
      allowCredentials: (json.allowCredentials || []).map((c) => ({ ...c, id: b64urlToBytes(c.id) })),
    };
  };
  const credentialJSON = (cred) => {
    if (cred.toJSON) return cred.toJSON();
    const r = cred.response;
    const response = { clientDataJSON: bytesToB64url(r.clientDataJSON) };
    if (r.attestationObject) {
      response.attestationObject = bytesToB64url(r.attestationObject);
      if (r.getTransports) response.transports = r.getTransports();
    } else {
      response.authenticatorData = bytesToB64url(r.authenticatorData);
      response.signature = bytesToB64url(r.signature);
      if (r.userHandle) response.userHandle = bytesToB64url(r.userHandle);
    }
    return {
      id: cred.id, rawId: bytesToB64url(cred.rawId), type: cred.type, response,
      authenticatorAttachment: cred.authenticatorAttachment || undefined,
      clientExtensionResults: cred.getClientExtensionResults(),
    };
  };

  const postJSON = async (path, body) => {
    const resp = await fetch(endpoint + path, {
      method: 'POST', credentials: 'same-origin',
      headers: { 'Content-Type': 'application/json', Accept: 'application/json' },
      body: JSON.stringify(body || {}),
    });
    const data = await resp.json().catch(() => ({}));
    if (!resp.ok) throw new Error(data.message || `HTTP ${resp.status}`);
    return data;
  };

  // postForm navigates like a submitted form (so the server's 303 and its
  // cookies apply), with the passkey's answer in a hidden field.
  const postForm = (action, fields) => {
    const form = document.createElement('form');
    form.method = 'post';
    form.action = action;
    form.hidden = true;
    for (const [name, value] of Object.entries(fields)) {
      const input = document.createElement('input');
      input.type = 'hidden';
      input.name = name;
      input.value = value;
      form.append(input);
    }
    document.body.append(form);
    form.submit();
  };

  const showError = (msg) => {
    let box = document.getElementById('passkey-error');
    if (!box) {
      box = document.createElement('p');
      box.id = 'passkey-error';
      box.className = 'msg err';
      box.setAttribute('role', 'alert');
      const anchor = document.querySelector('form') || document.body.firstChild;
      anchor.parentNode.insertBefore(box, anchor);
    }
    box.textContent = msg;
  };

  const supported = typeof window.PublicKeyCredential === 'function' && navigator.credentials;

  // --- login page ---
  const signIn = async (mediation, signal) => {
    const { publicKey } = await postJSON('/passkeys/login/options');
    const opts = { publicKey: requestOptions(publicKey) };
    if (mediation) opts.mediation = mediation;
    if (signal) opts.signal = signal;
    const cred = await navigator.credentials.get(opts);
    if (!cred) return;
    const redirect = document.querySelector('input[name="redirect"]');
    postForm(endpoint, {
      strategy: 'passkey',
      credential: JSON.stringify(credentialJSON(cred)),
      redirect: redirect ? redirect.value : '/',
    });
  };

  const loginButton = document.getElementById('passkey-button');
  let autofill = null; // the pending conditional request, aborted for the button
  const startAutofill = async () => {
    if (!document.querySelector('input[autocomplete~="webauthn"]')) return;
    // after a refused passkey, wait for the person to choose again: an
    // authenticator that answers at once would otherwise go round forever
    if (new URLSearchParams(location.search).get('error') === 'passkey_failed') return;
    if (!PublicKeyCredential.isConditionalMediationAvailable) return;
    if (!(await PublicKeyCredential.isConditionalMediationAvailable())) return;
    autofill = new AbortController();
    try {
      await signIn('conditional', autofill.signal);
    } catch (e) {
      if (e.name !== 'AbortError') console.warn('passkey autofill:', e);
    }
  };
  if (supported && loginButton) {
    loginButton.hidden = false;
    loginButton.addEventListener('click', async () => {
      if (autofill) autofill.abort();
      loginButton.disabled = true;
      try {
        await signIn();
      } catch (e) {
        if (e.name !== 'AbortError' && e.name !== 'NotAllowedError') showError('Signing in with a passkey did not work: ' + e.message);
      } finally {
        loginButton.disabled = false;
      }
    });
  }
  if (supported) startAutofill();

  // --- account page: add a passkey ---
  const addForm = document.getElementById('passkey-add-form');
  if (addForm) {
    if (!supported) {
      addForm.hidden = true;
    } else {
      addForm.addEventListener('submit', async (ev) => {
        ev.preventDefault();
        const button = addForm.querySelector('button');
        button.disabled = true;
        try {
          const { publicKey } = await postJSON('/passkeys/register/options');
          const cred = await navigator.credentials.create({ publicKey: creationOptions(publicKey) });
          const name = addForm.querySelector('input[name="name"]').value;
          await postJSON('/passkeys/register', { credential: credentialJSON(cred), name });
          location.assign(endpoint + '/account?notice=passkey_added');
        } catch (e) {
          if (e.name !== 'NotAllowedError') showError('The passkey was not added: ' + e.message);
        } finally {
          button.disabled = false;
        }
      });
    }
  }
  const noSupport = document.getElementById('passkey-unsupported');
  if (noSupport && !supported) noSupport.hidden = false;

  // --- step-up page and code page: a passkey as the second factor ---
  // The login ceremony's options; the form post carries the answer to the
  // page's action (the step-up page, or the code page of a password login
  // with its mfa_token cookie), which needs the passkey to have verified
  // its user.
  const stepUpButton = document.getElementById('passkey-step-up');
  if (stepUpButton && supported) {
    stepUpButton.hidden = false;
    stepUpButton.addEventListener('click', async () => {
      stepUpButton.disabled = true;
      try {
        const { publicKey } = await postJSON('/passkeys/login/options');
        const cred = await navigator.credentials.get({ publicKey: requestOptions(publicKey) });
        postForm(stepUpButton.dataset.action, {
          credential: JSON.stringify(credentialJSON(cred)),
          redirect: stepUpButton.dataset.redirect,
        });
      } catch (e) {
        if (e.name !== 'AbortError' && e.name !== 'NotAllowedError') showError('Confirming with a passkey did not work: ' + e.message);
        stepUpButton.disabled = false;
      }
    });
  }

  // --- invite page: register the first passkey and sign in ---
  const inviteButton = document.getElementById('invite-button');
  if (inviteButton && supported) {
    inviteButton.hidden = false;
    inviteButton.addEventListener('click', async () => {
      const action = inviteButton.dataset.action;
      inviteButton.disabled = true;
      try {
        const { publicKey } = await postJSON(action.slice(endpoint.length) + '/options');
        const cred = await navigator.credentials.create({ publicKey: creationOptions(publicKey) });
        postForm(action, { credential: JSON.stringify(credentialJSON(cred)) });
      } catch (e) {
        if (e.name !== 'NotAllowedError') showError('The passkey was not created: ' + e.message);
        inviteButton.disabled = false;
      }
    });
  }
})();
