// Passkeys (WebAuthn) for the portal: the one script its pages load.
// A form of class "passkey-form" carries the server's options (JSON, in
// data-options) and a ceremony id; this asks the browser for the passkey
// and posts the answer (JSON) with the form. No inline script, no eval:
// the portal's policy allows scripts from its own origin only.
"use strict";
(function () {
  function setUp(form) {
    var button = form.querySelector(".passkey-go");
    var status = form.querySelector(".passkey-status");
    form.querySelectorAll(".passkey-nojs").forEach(function (p) { p.hidden = true; });
    var able = window.PublicKeyCredential &&
      PublicKeyCredential.parseCreationOptionsFromJSON &&
      PublicKeyCredential.parseRequestOptionsFromJSON;
    if (!able || !button) {
      if (status) { status.textContent = "This browser cannot use passkeys."; }
      return;
    }
    button.hidden = false;
    button.addEventListener("click", function () {
      var call;
      try {
        var options = JSON.parse(form.dataset.options).publicKey;
        call = form.dataset.mode === "create"
          ? navigator.credentials.create({ publicKey: PublicKeyCredential.parseCreationOptionsFromJSON(options) })
          : navigator.credentials.get({ publicKey: PublicKeyCredential.parseRequestOptionsFromJSON(options) });
      } catch (e) {
        status.textContent = "The passkey could not be asked for (" + e.name + "). Reload the page.";
        return;
      }
      button.disabled = true;
      status.textContent = "Waiting for your passkey…";
      call.then(function (credential) {
        form.elements.answer.value = JSON.stringify(credential.toJSON());
        form.submit();
      }).catch(function (e) {
        button.disabled = false;
        status.textContent = "No passkey was used (" + e.name + "). Try again.";
      });
    });
  }
  document.querySelectorAll("form.passkey-form").forEach(setUp);
})();
