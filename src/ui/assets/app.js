// hookrunner's web page: asks before an action that cannot be undone, follows a running job's
// log, and refreshes the jobs list and the hooks page when jobs change. The page works without
// it. Text from the server goes in as text nodes only; a refreshed table comes from this site's
// own page, parsed with DOMParser.
"use strict";
document.addEventListener("submit", function (event) {
  var form = event.target;
  var question = form.getAttribute("data-confirm");
  if (question && !window.confirm(question)) {
    event.preventDefault();
  }
});

// A running job's page: its log grows as the job writes; at its end the page is loaded again,
// once, to show the job as it ended.
(function followLog() {
  var log = document.getElementById("log");
  var url = log && log.getAttribute("data-follow");
  if (!url || !window.EventSource) {
    return;
  }
  var source = new EventSource(url);
  var page = document.documentElement;
  source.addEventListener("log", function (event) {
    // The log scrolls in its own box, and the page around it: each stays at the bottom if it was.
    var logAtBottom = log.scrollTop + log.clientHeight >= log.scrollHeight - 4;
    var pageAtBottom = window.innerHeight + window.scrollY >= page.scrollHeight - 4;
    log.appendChild(document.createTextNode(event.data));
    if (logAtBottom) {
      log.scrollTop = log.scrollHeight;
    }
    if (pageAtBottom) {
      window.scrollTo(0, page.scrollHeight);
    }
  });
  source.addEventListener("end", function () {
    source.close();
    // The server says `end` only once the job has ended, so the page loaded again follows
    // nothing; should it still follow (a store that lags), it reloads at most every 10 s.
    var key = "hookrunner-reloaded:" + url.split("?")[0];
    try {
      var last = Number(window.sessionStorage.getItem(key));
      if (last && Date.now() - last < 10000) {
        return;
      }
      window.sessionStorage.setItem(key, String(Date.now()));
    } catch (error) {
      // No session storage: reload all the same.
    }
    window.location.reload();
  });
})();

// The jobs list (its first page only, so paging stays put) and the hooks page: when jobs change,
// the same page is fetched again and its tables replace these.
(function refreshTables() {
  var ids = ["jobs", "hooks", "instances"];
  var present = ids.some(function (id) {
    return document.getElementById(id);
  });
  var params = new URLSearchParams(window.location.search);
  if (!present || params.has("before") || !window.EventSource) {
    return;
  }
  var source = new EventSource("/ui/events");
  var busy = false;
  var again = false;
  function refresh() {
    if (busy) {
      again = true;
      return;
    }
    busy = true;
    again = false;
    fetch(window.location.href, { credentials: "same-origin" })
      .then(function (response) {
        if (!response.ok || response.redirected) {
          throw new Error("the page could not be loaded again");
        }
        return response.text();
      })
      .then(function (html) {
        var fresh = new DOMParser().parseFromString(html, "text/html");
        ids.forEach(function (id) {
          var old = document.getElementById(id);
          var replacement = fresh.getElementById(id);
          if (old && replacement) {
            old.replaceWith(document.adoptNode(replacement));
          }
        });
        busy = false;
        if (again) {
          refresh();
        }
      })
      .catch(function () {
        // Signed out, or the server is gone: stop, and leave the page as it is.
        source.close();
      });
  }
  source.addEventListener("changed", refresh);
})();
