// The fine-tune form: choosing another base model puts its default hyperparameters in the fields (the demo model
// trains at 0.01, real models at their method's rate), then asks for the estimate again.

document.addEventListener("change", (event) => {
  const select = event.target;
  const form = select.closest?.("#finetune-form");
  if (select.name !== "base_model" || !form) return;
  const all = JSON.parse(document.getElementById("finetune-defaults")?.textContent || "{}");
  for (const [name, value] of Object.entries(all[select.value] || {})) {
    const input = form.elements[name];
    if (!input) continue;
    if (input.type === "checkbox") input.checked = Boolean(value);
    else input.value = value ?? "";
  }
  form.dispatchEvent(new Event("input", { bubbles: true }));
});
