-- Nothing happens until require("asmr").setup() is called; this only makes :AsmrSetup available.
if vim.g.loaded_asmr then
  return
end
vim.g.loaded_asmr = true
