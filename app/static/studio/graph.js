// Studio's entity graph: pointing at or focusing a node highlights it, its neighbours and edges.
// The graph works without this script (every node is a link); this only helps read it.
(function () {
  var svg = document.querySelector("svg.graph");
  if (!svg) return;
  function mark(node, on) {
    var ids = (node.getAttribute("data-neighbours") || "").split(" ");
    var id = node.getAttribute("data-id");
    node.classList.toggle("hot", on);
    ids.forEach(function (other) {
      var n = svg.querySelector('a[data-id="' + other + '"]');
      if (n) n.classList.toggle("hot", on);
    });
    svg.querySelectorAll('line[data-a="' + id + '"], line[data-b="' + id + '"]').forEach(function (l) {
      l.classList.toggle("hot", on);
    });
  }
  svg.querySelectorAll("a[data-id]").forEach(function (node) {
    ["mouseenter", "focus"].forEach(function (e) { node.addEventListener(e, function () { mark(node, true); }); });
    ["mouseleave", "blur"].forEach(function (e) { node.addEventListener(e, function () { mark(node, false); }); });
  });
})();
