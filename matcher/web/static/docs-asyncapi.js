// Render the AsyncAPI document with the vendored standalone viewer, offline.
window.addEventListener("DOMContentLoaded", function () {
  "use strict";
  var element = document.getElementById("asyncapi");
  fetch(element.dataset.document)
    .then(function (response) { return response.json(); })
    .then(function (schema) {
      window.AsyncApiStandalone.render({
        schema: schema,
        config: { show: { sidebar: true, info: true, servers: true, operations: true,
                          messages: true, schemas: true, errors: true },
                  sidebar: { showServers: "byDefault", showOperations: "byDefault" } },
      }, element);
    });
});
