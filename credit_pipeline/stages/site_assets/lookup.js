// Contributor lookup: searches window.CREDIT_CONTRIBUTORS (set by contributors.js, loaded by a script tag so the
// page works from file://). Reads ?q= on load. Builds the DOM with textContent only: no outside text becomes markup.
(function () {
  "use strict";
  var data = window.CREDIT_CONTRIBUTORS || { people: [] };

  function el(tag, text, cls) {
    var node = document.createElement(tag);
    if (text !== undefined && text !== null) node.textContent = String(text);
    if (cls) node.className = cls;
    return node;
  }

  function haystack(person) {
    var parts = [person.recipient_id].concat(person.logins || [], person.wallets || []);
    (person.accounts || []).forEach(function (a) {
      parts.push(a.platform_user_id, a.source + ":" + a.platform_user_id, a.login);
    });
    return parts.filter(function (p) { return p; }).map(function (p) { return String(p).toLowerCase(); });
  }

  function matches(person, q) {
    return haystack(person).some(function (p) { return p.indexOf(q) !== -1; });
  }

  function row(cells, header) {
    var tr = el("tr");
    cells.forEach(function (c) {
      var cell = el(header ? "th" : "td", c.text, c.num ? "num" : null);
      if (c.href) { cell.textContent = ""; var a = el("a", c.text); a.href = c.href; cell.appendChild(a); }
      tr.appendChild(cell);
    });
    return tr;
  }

  function render(q) {
    var out = document.getElementById("results");
    out.textContent = "";
    q = (q || "").trim().toLowerCase();
    if (!q) { out.appendChild(el("p", "Type a name, login, platform account id, recipient id or wallet.", "muted")); return; }
    var found = data.people.filter(function (p) { return matches(p, q); });
    out.appendChild(el("p", found.length + (found.length === 1 ? " contributor" : " contributors") + " found.", "muted"));
    found.slice(0, 50).forEach(function (person) {
      var section = el("section");
      section.className = "person";
      section.appendChild(el("h2", person.recipient_id + ((person.logins || []).length ? " (" + person.logins.join(", ") + ")" : "")));
      var accounts = (person.accounts || []).map(function (a) { return a.source + " " + a.platform_user_id + (a.login ? " @" + a.login : ""); });
      if (accounts.length) section.appendChild(el("p", "Accounts: " + accounts.join("; ")));
      if ((person.wallets || []).length) section.appendChild(el("p", "Wallets: " + person.wallets.join(", ")));
      var table = el("table");
      table.appendChild(row([{ text: "epoch" }, { text: "revision" }, { text: "credits", num: true }, { text: "share" },
        { text: "per source" }, { text: "status" }, { text: "token amount", num: true }, { text: "statement hash" }], true));
      person.lines.forEach(function (line) {
        var split = Object.keys(line.by_source || {}).map(function (s) { return s + " " + line.by_source[s]; }).join(", ");
        table.appendChild(row([
          { text: line.epoch, href: "epochs/" + encodeURIComponent(line.epoch) + ".html" }, { text: line.revision },
          { text: line.amount_credits, num: true }, { text: line.share }, { text: split },
          { text: line.status + (line.held_reason ? " (" + line.held_reason + ")" : "") },
          { text: line.token_amount === null ? "" : line.token_amount, num: true }, { text: line.statement_hash }]));
      });
      section.appendChild(table);
      out.appendChild(section);
    });
  }

  document.addEventListener("DOMContentLoaded", function () {
    var input = document.getElementById("q");
    var q = new URLSearchParams(window.location.search).get("q") || "";
    input.value = q;
    render(q);
    input.addEventListener("input", function () { render(input.value); });
    document.getElementById("lookup").addEventListener("submit", function (ev) { ev.preventDefault(); render(input.value); });
  });
})();
