// A form that takes a while (recalibration) says so and cannot be sent twice.
document.querySelectorAll('form[data-busy]').forEach(function (form) {
  form.addEventListener('submit', function () {
    var button = form.querySelector('button');
    button.disabled = true;
    button.textContent = form.dataset.busy;
  });
});
